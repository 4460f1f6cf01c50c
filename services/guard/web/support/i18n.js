// Texts of the support console in English and Korean. The language comes from localStorage (the
// visible toggle remembers the choice), else from navigator.language.
const TEXT = {
  en: {
    title: 'Support console',
    lang_other: '한국어',
    signout: 'Sign out',
    signin_title: 'Staff sign-in',
    signin_help: 'Paste your staff token. It is kept in this tab only.',
    token: 'Staff token',
    signin: 'Sign in',
    signed_in_as: 'Signed in as {name}',
    find_title: 'Find an account',
    query: 'Account ID or its beginning',
    find: 'Find',
    list_locked: 'Locked accounts',
    found: '{n} account(s) with settings found.',
    found_none: 'No account with settings starts with that.',
    open_exact: 'Open account “{id}”',
    col_audit_action: 'Action',
    account: 'Account',
    unlock_title: 'Unlock this account',
    unlock_help: "Unlock only after checking the player's identity. The reason is kept in the audit trail with your name.",
    reason: 'Reason (required)',
    unlock: 'Unlock',
    unlocked: 'Unlocked. The audit trail has the entry.',
    logins_title: 'Recent logins',
    locks_title: 'Lock history',
    audit_title: 'Audit trail',
    col_time: 'Time',
    col_country: 'Country',
    col_ip: 'IP address',
    col_server: 'Server',
    col_action: 'Guard',
    col_event: 'Event',
    col_by: 'By',
    col_details: 'Details',
    col_staff: 'Staff',
    col_reason: 'Reason',
    none_yet: 'None.',
    f_state: 'State',
    f_policy: 'Policy',
    f_channels: 'Channels',
    f_contacts: 'Contacts',
    f_allowed: 'Allowed countries',
    f_home: 'Home countries',
    f_code: 'Unlock code',
    f_updated: 'Settings changed',
    f_known: 'Settings',
    known_no: 'never set (defaults apply)',
    state_locked: 'Locked',
    state_ok: 'Not locked',
    blocked_abroad: 'blocks play from abroad',
    until: 'until {date}',
    forever: 'no end date',
    code_none: 'none pending',
    code_pending: 'pending, expires {date}, {n} of {max} tries used',
    code_expired: 'expired {date}',
    ev_locked: 'Locked',
    ev_unlocked: 'Unlocked',
    by_policy: 'Policy',
    by_code: 'Player (code)',
    by_staff: 'Staff: {name}',
    login_from: 'login from {country}, {ip}',
    unknown_country: 'Unknown',
    action_null: '—',
    action_none: 'Allowed',
    action_notify: 'Notified',
    action_kick: 'Session ended',
    action_block_abroad: 'Blocked',
    action_lock: 'Account locked',
    policy_none: 'none',
    policy_notify: 'notify',
    policy_kick: 'kick',
    policy_block_abroad: 'block abroad',
    policy_lock: 'lock',
    err_network: 'The service cannot be reached. Try again in a moment.',
    err_token: 'This token is not valid (or has expired). Please sign in again.',
    err_not_staff: 'This is not a staff token.',
    err_forbidden: 'This token may not use the support console.',
    err_reason: 'A reason is required to unlock an account.',
    err_query: 'Enter an account ID or the beginning of one.',
    err_generic: 'Something went wrong: {msg}',
    err_unavailable: 'The service is busy. Try again in a moment.',
  },
  ko: {
    title: '고객 지원 콘솔',
    lang_other: 'English',
    signout: '로그아웃',
    signin_title: '직원 로그인',
    signin_help: '직원 토큰을 붙여 넣으세요. 이 탭에만 보관됩니다.',
    token: '직원 토큰',
    signin: '로그인',
    signed_in_as: '{name} 님',
    find_title: '계정 찾기',
    query: '계정 ID 또는 앞부분',
    find: '찾기',
    list_locked: '잠긴 계정',
    found: '설정이 있는 계정 {n}개를 찾았습니다.',
    found_none: '그렇게 시작하는 설정된 계정이 없습니다.',
    open_exact: '“{id}” 계정 열기',
    col_audit_action: '조치',
    account: '계정',
    unlock_title: '이 계정 잠금 해제',
    unlock_help: '본인 확인 후에만 잠금을 해제하세요. 사유는 직원 이름과 함께 감사 기록에 남습니다.',
    reason: '사유 (필수)',
    unlock: '잠금 해제',
    unlocked: '잠금을 해제했습니다. 감사 기록에 남았습니다.',
    logins_title: '최근 로그인',
    locks_title: '잠금 기록',
    audit_title: '감사 기록',
    col_time: '시간',
    col_country: '국가',
    col_ip: 'IP 주소',
    col_server: '서버',
    col_action: '보안 조치',
    col_event: '내용',
    col_by: '주체',
    col_details: '세부 사항',
    col_staff: '직원',
    col_reason: '사유',
    none_yet: '없음.',
    f_state: '상태',
    f_policy: '정책',
    f_channels: '알림 방법',
    f_contacts: '연락처',
    f_allowed: '허용 국가',
    f_home: '본국',
    f_code: '잠금 해제 코드',
    f_updated: '설정 변경',
    f_known: '설정',
    known_no: '설정한 적 없음 (기본값)',
    state_locked: '잠김',
    state_ok: '정상',
    blocked_abroad: '해외 접속 차단 중',
    until: '{date}까지',
    forever: '종료일 없음',
    code_none: '대기 중인 코드 없음',
    code_pending: '대기 중, {date} 만료, {max}회 중 {n}회 시도',
    code_expired: '{date} 만료됨',
    ev_locked: '잠김',
    ev_unlocked: '잠금 해제',
    by_policy: '정책',
    by_code: '플레이어 (코드)',
    by_staff: '직원: {name}',
    login_from: '{country}에서 로그인, {ip}',
    unknown_country: '알 수 없음',
    action_null: '—',
    action_none: '허용',
    action_notify: '알림 보냄',
    action_kick: '접속 종료됨',
    action_block_abroad: '차단됨',
    action_lock: '계정 잠김',
    policy_none: '없음',
    policy_notify: '알림',
    policy_kick: '접속 종료',
    policy_block_abroad: '해외 차단',
    policy_lock: '잠금',
    err_network: '서비스에 연결할 수 없습니다. 잠시 후 다시 시도하세요.',
    err_token: '토큰이 유효하지 않거나 만료되었습니다. 다시 로그인하세요.',
    err_not_staff: '직원 토큰이 아닙니다.',
    err_forbidden: '이 토큰으로는 지원 콘솔을 쓸 수 없습니다.',
    err_reason: '잠금을 해제하려면 사유가 필요합니다.',
    err_query: '계정 ID 또는 그 앞부분을 입력하세요.',
    err_generic: '문제가 발생했습니다: {msg}',
    err_unavailable: '서비스가 바쁩니다. 잠시 후 다시 시도하세요.',
  },
};

const KEY = 'support.lang';
let lang = localStorage.getItem(KEY) ||
  ((navigator.language || 'en').toLowerCase().startsWith('ko') ? 'ko' : 'en');
if (!TEXT[lang]) lang = 'en';

export function currentLang() { return lang; }

export function setLang(l) {
  lang = TEXT[l] ? l : 'en';
  localStorage.setItem(KEY, lang);
}

export function t(key, vars = {}) {
  const s = TEXT[lang][key] ?? TEXT.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

export function applyStatic(root = document) {
  document.documentElement.lang = lang;
  document.title = t('title');
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
}

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
