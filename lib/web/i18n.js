// The pages' language handling (lib/web, served under <page>/common/). A page gives its texts,
// {en: {...}, ko: {...}}, and the localStorage key that remembers the reader's choice; the
// language is that choice, else navigator.language, else English.
export function createI18n(TEXT, storageKey) {
  let lang = localStorage.getItem(storageKey) ||
    ((navigator.language || 'en').toLowerCase().startsWith('ko') ? 'ko' : 'en');
  if (!TEXT[lang]) lang = 'en';

  // The text of key in the current language, with {name} placeholders filled from vars.
  function t(key, vars = {}) {
    const s = TEXT[lang][key] ?? TEXT.en[key] ?? key;
    return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
  }

  return {
    t,
    currentLang: () => lang,
    setLang(l) {
      lang = TEXT[l] ? l : 'en';
      localStorage.setItem(storageKey, lang);
    },
    // Fills every [data-i18n] element under root with its text.
    applyStatic(root = document) {
      document.documentElement.lang = lang;
      document.title = t('title');
      for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    },
    // The country's name in the current language ("Germany"), or the page's unknown_country
    // text for ZZ and missing codes.
    countryName(code) {
      if (!code || !/^[A-Z]{2}$/.test(code) || code === 'ZZ') return t('unknown_country');
      try {
        const name = new Intl.DisplayNames([lang], { type: 'region' }).of(code);
        return name && name !== code ? name : t('unknown_country');
      } catch {
        return t('unknown_country');
      }
    },
    formatTime(ts) {
      const d = new Date(ts);
      if (Number.isNaN(d.getTime())) return ts || '';
      return new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'medium' }).format(d);
    },
  };
}
