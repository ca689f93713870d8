/** Formatting helpers shared by the pages. */

const numberFormat = new Intl.NumberFormat('en');

/** `12,345`. */
export function num(value: number): string {
  return numberFormat.format(value);
}

/** A timestamp (ms) as local date and time, to the second. */
export function dateTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A timestamp (ms) as a time of day with milliseconds, for the live tail. */
export function timeOfDay(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A duration in seconds as `30 s`, `5 min`, `2 h`, `7 d`. */
export function duration(secs: number): string {
  if (secs % 86_400 === 0 && secs >= 86_400) return `${secs / 86_400} d`;
  if (secs % 3600 === 0 && secs >= 3600) return `${secs / 3600} h`;
  if (secs % 60 === 0 && secs >= 60) return `${secs / 60} min`;
  return `${secs} s`;
}

/** An age or a wait in milliseconds, to its two largest units: `850 ms`, `12 s`,
 * `3 min 5 s`, `2 h 10 min`, `3 d 4 h`. */
export function elapsed(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const secs = Math.floor(ms / 1000);
  const units: [number, string][] = [[86_400, 'd'], [3600, 'h'], [60, 'min'], [1, 's']];
  const i = units.findIndex(([size]) => secs >= size);
  const [size, unit] = units[i] as [number, string];
  const whole = `${Math.floor(secs / size)} ${unit}`;
  const next = units[i + 1];
  const rest = next ? Math.floor((secs % size) / next[0]) : 0;
  return next && rest > 0 ? `${whole} ${rest} ${next[1]}` : whole;
}

/** A topic's retention in words. */
export function retention(r: { max_events?: number | null; max_age_secs?: number | null }): string {
  const parts: string[] = [];
  if (r.max_events != null) parts.push(`${num(r.max_events)} events`);
  if (r.max_age_secs != null) parts.push(duration(r.max_age_secs));
  return parts.length ? parts.join(' · ') : 'unlimited';
}

/** Pretty JSON for display. */
export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) ?? 'undefined';
}

/** JSON text (as the server stores it) pretty for display; text that is not JSON as it is. */
export function jsonText(text: string): string {
  try {
    return json(JSON.parse(text));
  } catch {
    return text;
  }
}

/** The number in an optional numeric field (`bind:value` on a number input gives a
 * number, or null/'' when empty); `undefined` when empty. */
export function optionalNumber(value: unknown): number | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string' && value.trim() === '') return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

/** A delivery's last error for display: '' when its last attempt did not fail (a 2xx
 * status is a success, not an error), else the status once with its reason. The server's
 * error text for an answered request already reads "HTTP 500 Internal Server Error";
 * without `deliveries:manage` it is only a class such as `http_status`. */
export function deliveryError(status: number | null | undefined, error: string | null | undefined): string {
  if (!error) return '';
  if (status == null) return error;
  const http = `HTTP ${status}`;
  if (error === http || error.startsWith(`${http} `)) return error;
  if (error === 'http_status') return http;
  return `${http}: ${error}`;
}
