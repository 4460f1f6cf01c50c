// Texts of the player page in English and Korean. The language comes from localStorage (the
// visible toggle remembers the choice), else from navigator.language.
const TEXT = {
  en: {
    title: 'Account security',
    lang_other: '한국어',
    signout: 'Sign out',
    signin_title: 'Sign in',
    signin_help: 'Paste the player token your game client gave you. It is kept in this tab only.',
    token: 'Player token',
    account_optional: 'Account ID (optional: taken from the token)',
    signin: 'Sign in',
    signed_in_as: 'Account',
    locked_title: 'Your account is locked',
    locked_help: 'A login from abroad locked your account. Enter the unlock code we sent you.',
    code: 'Unlock code',
    unlock: 'Unlock',
    history_title: 'Login history',
    history_caption: 'Logins to your account, newest first',
    col_time: 'Time',
    col_country: 'Country',
    col_ip: 'IP address',
    col_server: 'Server',
    col_action: 'Guard',
    col_country_code: 'Code',
    col_until: 'Until (end date)',
    no_logins: 'No logins yet.',
    newer: '← Newer',
    older: 'Older →',
    page: 'Page {n}',
    settings_title: 'Security settings',
    home_note: 'Logins from your home country ({list}) never trigger anything.',
    policy_legend: 'When someone logs in from another country',
    channels_legend: 'Tell me by',
    ch_email: 'Email',
    ch_sms: 'SMS',
    ch_ingame: 'In game',
    allowed_legend: 'Allowed countries (travel)',
    allowed_help: 'Logins from these countries are fine. Give an end date for a trip; leave it empty to allow the country for good.',
    add_country: 'Add a country',
    remove: 'Remove',
    contacts_legend: 'Contacts',
    email: 'Email',
    phone: 'Phone',
    save: 'Save settings',
    saved: 'Saved.',
    unknown_country: 'Unknown',
    bad_country: 'not a country code',
    policy_none: 'Do nothing',
    policy_none_desc: 'The login is only recorded in the history.',
    policy_notify: 'Tell me',
    policy_notify_desc: 'You get a message.',
    policy_kick: 'End the session',
    policy_kick_desc: 'That session is ended and you get a message.',
    policy_block_abroad: 'Block play from abroad',
    policy_block_abroad_desc: 'Play from other countries is refused until you allow the country.',
    policy_lock: 'Lock my account',
    policy_lock_desc: 'The account is locked and you get a one-time unlock code.',
    action_null: '—',
    action_none: 'Allowed',
    action_notify: 'Notified',
    action_kick: 'Session ended',
    action_block_abroad: 'Blocked',
    action_lock: 'Account locked',
    state_locked: 'Locked',
    state_ok: 'Not locked',
    unlocked: 'Your account is unlocked.',
    err_network: 'The service cannot be reached. Try again in a moment.',
    err_token: 'This token is not valid (or has expired). Please sign in again.',
    err_token_format: 'This does not look like a player token.',
    err_other_account: 'This token belongs to another account than {id}. Sign in with the token of {id}.',
    err_code_required: 'Enter the code from the message.',
    err_wrong_code: 'Wrong code. {n} tries left.',
    err_attempts: 'Too many wrong codes. Contact support to unlock the account.',
    err_expired: 'The code has expired. Contact support to unlock the account.',
    err_no_code: 'There is no pending unlock code for this account.',
    err_unavailable: 'The service is busy. Try again in a moment.',
    err_generic: 'Something went wrong: {msg}',
  },
  ko: {
    title: '계정 보안',
    lang_other: 'English',
    signout: '로그아웃',
    signin_title: '로그인',
    signin_help: '게임 클라이언트에서 받은 플레이어 토큰을 붙여 넣으세요. 이 탭에만 보관됩니다.',
    token: '플레이어 토큰',
    account_optional: '계정 ID (선택: 토큰에서 가져옴)',
    signin: '로그인',
    signed_in_as: '계정',
    locked_title: '계정이 잠겼습니다',
    locked_help: '해외 로그인으로 계정이 잠겼습니다. 받으신 잠금 해제 코드를 입력하세요.',
    code: '잠금 해제 코드',
    unlock: '잠금 해제',
    history_title: '로그인 기록',
    history_caption: '계정의 로그인 기록, 최신순',
    col_time: '시간',
    col_country: '국가',
    col_ip: 'IP 주소',
    col_server: '서버',
    col_action: '보안 조치',
    col_country_code: '코드',
    col_until: '종료일',
    no_logins: '로그인 기록이 없습니다.',
    newer: '← 최신',
    older: '이전 →',
    page: '{n} 페이지',
    settings_title: '보안 설정',
    home_note: '본국({list})에서의 로그인에는 아무 조치도 하지 않습니다.',
    policy_legend: '다른 나라에서 로그인하면',
    channels_legend: '알림 방법',
    ch_email: '이메일',
    ch_sms: '문자',
    ch_ingame: '게임 내',
    allowed_legend: '허용 국가 (여행)',
    allowed_help: '이 나라에서의 로그인은 허용됩니다. 여행이라면 종료일을 넣으세요. 비워 두면 계속 허용됩니다.',
    add_country: '국가 추가',
    remove: '삭제',
    contacts_legend: '연락처',
    email: '이메일',
    phone: '전화번호',
    save: '설정 저장',
    saved: '저장했습니다.',
    unknown_country: '알 수 없음',
    bad_country: '국가 코드가 아닙니다',
    policy_none: '아무것도 하지 않음',
    policy_none_desc: '로그인 기록만 남깁니다.',
    policy_notify: '알림',
    policy_notify_desc: '메시지를 보내 드립니다.',
    policy_kick: '접속 종료',
    policy_kick_desc: '해당 접속을 끊고 메시지를 보내 드립니다.',
    policy_block_abroad: '해외 접속 차단',
    policy_block_abroad_desc: '허용하기 전까지 다른 나라에서의 플레이를 거부합니다.',
    policy_lock: '계정 잠금',
    policy_lock_desc: '계정을 잠그고 일회용 잠금 해제 코드를 보내 드립니다.',
    action_null: '—',
    action_none: '허용',
    action_notify: '알림 보냄',
    action_kick: '접속 종료됨',
    action_block_abroad: '차단됨',
    action_lock: '계정 잠김',
    state_locked: '잠김',
    state_ok: '정상',
    unlocked: '계정 잠금이 해제되었습니다.',
    err_network: '서비스에 연결할 수 없습니다. 잠시 후 다시 시도하세요.',
    err_token: '토큰이 유효하지 않거나 만료되었습니다. 다시 로그인하세요.',
    err_token_format: '플레이어 토큰 형식이 아닙니다.',
    err_other_account: '이 토큰은 {id} 계정의 토큰이 아닙니다. {id} 계정의 토큰으로 로그인하세요.',
    err_code_required: '메시지로 받은 코드를 입력하세요.',
    err_wrong_code: '코드가 틀렸습니다. {n}번 남았습니다.',
    err_attempts: '틀린 코드를 너무 많이 입력했습니다. 고객 지원에 잠금 해제를 요청하세요.',
    err_expired: '코드가 만료되었습니다. 고객 지원에 잠금 해제를 요청하세요.',
    err_no_code: '이 계정에는 대기 중인 잠금 해제 코드가 없습니다.',
    err_unavailable: '서비스가 바쁩니다. 잠시 후 다시 시도하세요.',
    err_generic: '문제가 발생했습니다: {msg}',
  },
};

const KEY = 'player.lang';
let lang = localStorage.getItem(KEY) ||
  ((navigator.language || 'en').toLowerCase().startsWith('ko') ? 'ko' : 'en');
if (!TEXT[lang]) lang = 'en';

export function currentLang() { return lang; }

export function setLang(l) {
  lang = TEXT[l] ? l : 'en';
  localStorage.setItem(KEY, lang);
}

// The text of key in the current language, with {name} placeholders filled from vars.
export function t(key, vars = {}) {
  const s = TEXT[lang][key] ?? TEXT.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

// Fills every [data-i18n] element under root with its text.
export function applyStatic(root = document) {
  document.documentElement.lang = lang;
  document.title = t('title');
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
}

// The country's name in the current language ("Germany"), or "Unknown" for ZZ/missing codes.
export function countryName(code) {
  if (!code || !/^[A-Z]{2}$/.test(code) || code === 'ZZ') return t('unknown_country');
  try {
    const name = new Intl.DisplayNames([lang], { type: 'region' }).of(code);
    return name && name !== code ? name : t('unknown_country');
  } catch {
    return t('unknown_country');
  }
}

export function formatTime(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts || '';
  return new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'medium' }).format(d);
}
