// Texts of the bus dashboard in English and Korean; the language logic is common/i18n.js (the
// reader's stored choice, else the browser's language, else English; the header's button
// switches). Names of the data (topics, routes, services, event ids) stay as they are.
import { createI18n } from './common/i18n.js';

const TEXT = {
  en: {
    title: 'Bus dashboard',
    lang_other: '한국어',
    lang_label: 'Language: 한국어',
    signout: 'Sign out',
    signin_title: 'Admin sign-in',
    signin_help_1: "Paste the dispatcher's admin token (",
    signin_help_2: '; in development ',
    signin_help_3: '). It is kept in this tab only.',
    token: 'Admin token',
    signin: 'Sign in',
    graph_title: 'Topology',
    graph_help: 'The flow, left to right: each topic, the routes reading it (with the service they deliver to), the topics they write, and so on. A red route has its circuit breaker open; a failing route shows its last error and since when.',
    graph_label: 'The flow: topics, the routes reading them, the services they deliver to and the topics they write',
    col_topics: 'Topics',
    col_routes: 'Routes → service',
    partitions: '{n} partitions',
    partition: '1 partition',
    topic: 'topic',
    dead_letters: 'dead letters',
    lag_short: 'lag {n}',
    per_second: '{n}/s',
    routes_title: 'Routes',
    routes_help: 'Counters since this dispatcher started; rates over the last update (every few seconds). Choose a route to see its dead letters.',
    th_route: 'Route',
    th_state: 'State',
    th_rate: 'Delivered/s',
    th_delivered: 'Delivered',
    th_retried: 'Retried',
    th_failed: 'Failed',
    th_dead: 'Dead letters',
    th_in_flight: 'In flight',
    th_lag: 'Lag',
    routes_empty: 'This dispatcher runs no route.',
    dlq_title: 'Dead letters of',
    refresh: 'Refresh',
    replay: 'Replay through the route',
    close: 'Close',
    dlq_help_1: 'The newest dead letters in',
    dlq_help_2: '({n} records in the topic). Replay sends them through the route again, with its retries and ordering: fix the endpoint first.',
    th_time: 'Time',
    th_event: 'Event id',
    th_status: 'Status',
    th_attempts: 'Attempts',
    th_reason: 'Reason',
    th_from: 'From',
    dlq_empty: 'No dead letters of this route.',
    event: 'Event',
    event_offset: 'offset {n}',
    value: 'Value',
    headers: 'Headers',
    state_running: 'running',
    state_retrying: 'retrying',
    'state_breaker-open': 'breaker open',
    state_paused: 'paused',
    state_unknown: 'unknown',
    'mode_one-way': 'one-way',
    mode_streaming: 'streaming',
    since: 'since {time}',
    last_error: 'last error {time}:',
    failing_title: 'failing since {time}: {error}',
    err_no_answer: 'no answer',
    err_timeout: 'timed out',
    err_refused: 'connection refused',
    updated: 'Updated {time}',
    err_network: 'The dispatcher does not answer. Retrying…',
    err_not_admin: 'This is not the admin token.',
    err_sign_in: 'Sign in with the admin token.',
    err_status: 'The dispatcher answered {status}.',
    err_routes_status: 'GET /v1/routes answered {status}.',
    err_paste: 'Paste the admin token first.',
    no_dlq_topic: 'This route has no dead-letter topic: refused events are logged and skipped.',
    loading: 'Loading…',
    replaying: 'Replaying…',
    replay_none: 'Nothing to replay: every dead letter was replayed before.',
    replay_one: 'Replayed 1 dead letter to {to}.',
    replay_n: 'Replayed {n} dead letters to {to}.',
  },
  ko: {
    title: '버스 대시보드',
    lang_other: 'English',
    lang_label: '언어: English',
    signout: '로그아웃',
    signin_title: '관리자 로그인',
    signin_help_1: '디스패처의 관리자 토큰(',
    signin_help_2: ', 개발 환경에서는 ',
    signin_help_3: ')을 붙여 넣으세요. 토큰은 이 탭에만 보관됩니다.',
    token: '관리자 토큰',
    signin: '로그인',
    graph_title: '토폴로지',
    graph_help: '왼쪽에서 오른쪽으로 흐름을 보여 줍니다: 각 토픽, 그 토픽을 읽는 라우트(전달 대상 서비스 포함), 라우트가 쓰는 토픽 순서입니다. 빨간 라우트는 회로 차단기가 열린 상태이며, 실패 중인 라우트는 마지막 오류와 실패 시작 시각을 보여 줍니다.',
    graph_label: '흐름: 토픽, 토픽을 읽는 라우트, 라우트가 전달하는 서비스, 라우트가 쓰는 토픽',
    col_topics: '토픽',
    col_routes: '라우트 → 서비스',
    partitions: '파티션 {n}개',
    partition: '파티션 1개',
    topic: '토픽',
    dead_letters: '배달 못 한 메시지',
    lag_short: '지연 {n}',
    per_second: '{n}/초',
    routes_title: '라우트',
    routes_help: '이 디스패처가 시작된 뒤의 누적 수치이며, 속도는 마지막 갱신(몇 초마다) 기준입니다. 라우트를 선택하면 배달 못 한 메시지를 볼 수 있습니다.',
    th_route: '라우트',
    th_state: '상태',
    th_rate: '초당 전달',
    th_delivered: '전달',
    th_retried: '재시도',
    th_failed: '실패',
    th_dead: '배달 못 함',
    th_in_flight: '처리 중',
    th_lag: '지연',
    routes_empty: '이 디스패처에는 실행 중인 라우트가 없습니다.',
    dlq_title: '배달 못 한 메시지:',
    refresh: '새로 고침',
    replay: '라우트로 다시 보내기',
    close: '닫기',
    dlq_help_1: '다음 토픽의 최근 배달 못 한 메시지입니다:',
    dlq_help_2: '(토픽의 레코드 {n}개). 다시 보내기는 라우트의 재시도와 순서 규칙대로 다시 전달합니다. 먼저 엔드포인트를 고치세요.',
    th_time: '시각',
    th_event: '이벤트 ID',
    th_status: '상태 코드',
    th_attempts: '시도 횟수',
    th_reason: '사유',
    th_from: '원본 위치',
    dlq_empty: '이 라우트에는 배달 못 한 메시지가 없습니다.',
    event: '이벤트',
    event_offset: '오프셋 {n}',
    value: '값',
    headers: '헤더',
    state_running: '정상',
    state_retrying: '재시도 중',
    'state_breaker-open': '차단기 열림',
    state_paused: '일시 중지',
    state_unknown: '알 수 없음',
    'mode_one-way': '단방향',
    mode_streaming: '스트리밍',
    since: '{time}부터',
    last_error: '마지막 오류 {time}:',
    failing_title: '{time}부터 실패 중: {error}',
    err_no_answer: '응답 없음',
    err_timeout: '시간 초과',
    err_refused: '연결 거부',
    updated: '{time} 갱신',
    err_network: '디스패처가 응답하지 않습니다. 다시 시도하는 중…',
    err_not_admin: '관리자 토큰이 아닙니다.',
    err_sign_in: '관리자 토큰으로 로그인하세요.',
    err_status: '디스패처가 {status}(으)로 응답했습니다.',
    err_routes_status: '라우트 조회가 {status}(으)로 응답했습니다.',
    err_paste: '먼저 관리자 토큰을 붙여 넣으세요.',
    no_dlq_topic: '이 라우트에는 배달 못 한 메시지 토픽이 없습니다: 거부된 이벤트는 기록만 하고 건너뜁니다.',
    loading: '불러오는 중…',
    replaying: '다시 보내는 중…',
    replay_none: '다시 보낼 것이 없습니다: 모든 메시지를 이미 다시 보냈습니다.',
    replay_one: '배달 못 한 메시지 1개를 {to}(으)로 다시 보냈습니다.',
    replay_n: '배달 못 한 메시지 {n}개를 {to}(으)로 다시 보냈습니다.',
  },
};

const i18n = createI18n(TEXT, 'bus.lang');
export const { t, applyStatic, setLang, currentLang } = i18n;

// Numbers as the reader writes them (1,234).
export function fmtNumber(n) {
  return Number.isFinite(n) ? n.toLocaleString(currentLang() === 'ko' ? 'ko-KR' : 'en-US') : '–';
}

const locale = () => (currentLang() === 'ko' ? 'ko-KR' : 'en-GB');
const CLOCK = { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' };

// A clock time (14:02:11) in the reader's language.
export function clock(d) {
  return d.toLocaleTimeString(locale(), CLOCK);
}

// A date and time (7 Dec 2026, 14:02:11 / 2026년 12월 7일 14:02:11).
export function dateTime(d) {
  return d.toLocaleString(locale(), { year: 'numeric', month: 'short', day: 'numeric', ...CLOCK });
}

// A short date and time (7 Dec, 14:02 / 12월 7일 14:02).
export function shortDateTime(d) {
  return d.toLocaleString(locale(),
    { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
}

// A route's state in the reader's language (an unknown state: as it is).
export function stateText(s) {
  const key = `state_${s}`;
  const text = t(key);
  return text === key ? s : text;
}

// A delivery error as the dispatcher reports it ("HTTP 503: <the endpoint's message>", or the
// transport's words): the dispatcher's own words in the reader's language, the endpoint's
// message as the endpoint wrote it.
export function errorText(e) {
  if (!e) return '';
  if (/^HTTP \d+/.test(e)) return e;
  const known = { 'no answer': 'err_no_answer' };
  if (known[e]) return t(known[e]);
  if (/timed? ?out|timeout/i.test(e)) return t('err_timeout');
  if (/refused/i.test(e)) return t('err_refused');
  return e;
}
