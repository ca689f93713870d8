/** Scripts in words and back: names, test-run inputs, errors and durations. */

/** What is wrong with a script name (topic-name rules: 1-200 of letters, digits and
 * `. _ - : /`), or '' when nothing is. The server checks again. */
export function scriptNameProblem(name: string): string {
  if (name.length === 0) return 'Give the script a name.';
  if (name.length > 200) return 'A name is at most 200 characters.';
  const bad = [...name].find((c) => !/[A-Za-z0-9._:/-]/.test(c));
  if (bad !== undefined) return `A name is letters, digits and . _ - : / only, not ${bad === ' ' ? 'spaces' : `“${bad}”`}.`;
  return '';
}

/** The source a new script starts with: an HTTP function answering JSON. */
export function newScriptSource(name: string): string {
  return [
    `// ${name}: called by GET or POST /v1/apps/{app}/functions/${name}`,
    '// (or as a trigger handler, with `event` and `delivery` in scope).',
    'fn handle(req) {',
    '    log::info(`called with ${req.method}`);',
    '    #{ status: 200, body: #{ ok: true } }',
    '}',
    '',
  ].join('\n');
}

/** A sample event for a handler's test run: the envelope a webhook or a script handler
 * gets for an event of a topic. */
export function sampleEvent(app: string, now = Date.now()): string {
  const event = {
    id: 'evt_test',
    app,
    topic: 'orders',
    seq: 1,
    type: 'order.created',
    data: { id: 42, total: 19.9 },
    published_at: now,
  };
  return JSON.stringify(event, null, 2);
}

function jsonObject(text: string, what: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${what} must be a JSON object of names to values.`);
  }
  return Object.fromEntries(
    Object.entries(parsed).map(([key, value]) => [key, typeof value === 'string' ? value : JSON.stringify(value)]),
  );
}

/** A test request's query: a JSON object, or `name=value` lines (or `a=1&b=2`). */
export function parseQuery(text: string): Record<string, string> {
  const trimmed = text.trim();
  if (trimmed === '') return {};
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) return jsonObject(trimmed, 'The query');
  const query: Record<string, string> = {};
  for (const part of trimmed.replace(/^\?/, '').split(/\n|&/)) {
    const pair = part.trim();
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const [name, value] = eq === -1 ? [pair, ''] : [pair.slice(0, eq), pair.slice(eq + 1)];
    if (name.trim() === '') throw new Error(`The query line “${pair}” has no name before the =.`);
    query[name.trim()] = value.trim();
  }
  return query;
}

/** A test request's headers: a JSON object, or `name: value` lines. Names lower-case. */
export function parseHeaders(text: string): Record<string, string> {
  const trimmed = text.trim();
  if (trimmed === '') return {};
  const entries = trimmed.startsWith('{') || trimmed.startsWith('[')
    ? Object.entries(jsonObject(trimmed, 'The headers'))
    : trimmed.split('\n').filter((line) => line.trim() !== '').map((line) => {
        const colon = line.indexOf(':');
        if (colon <= 0) throw new Error(`The header line “${line.trim()}” is not name: value.`);
        return [line.slice(0, colon), line.slice(colon + 1)] as const;
      });
  return Object.fromEntries(entries.map(([name, value]) => [name.trim().toLowerCase(), value.trim()]));
}

/** A handler test's event: any JSON value. */
export function parseEvent(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`The event is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Where a script went wrong, for marking in the editor. */
export interface SourceError {
  /** 1-based; 0 when unknown. */
  line: number;
  /** 1-based; 0 when unknown. */
  column: number;
  message: string;
}

/** A compile error's message without the server's prefix and position (shown apart):
 * "the script does not compile: line 2, column 9: Expecting ';'" → "Expecting ';'". */
export function compileMessage(message: string): string {
  return message
    .replace(/^the script does not compile:\s*/i, '')
    .replace(/^line \d+, column \d+:\s*/i, '');
}

/** The position a run's error names (Rhai's "(line 3, position 9)"), if any. */
export function runErrorPosition(error: string): { line: number; column: number } | undefined {
  const found = /\(line (\d+), position (\d+)\)/.exec(error);
  if (!found) return undefined;
  const line = Number(found[1]);
  return line > 0 ? { line, column: Number(found[2]) } : undefined;
}

/** `Line 2, column 9` (or nothing when the position is unknown). */
export function positionText(error: { line: number; column: number }): string {
  if (error.line <= 0) return '';
  return error.column > 0 ? `Line ${error.line}, column ${error.column}` : `Line ${error.line}`;
}

/** A run's duration: `180 µs`, `4.2 ms`, `1.25 s`. */
export function micros(us: number): string {
  if (us < 1000) return `${us} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 1 : 0)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

/** A run's kind in words. */
export function runKind(kind: string): string {
  const words: Record<string, string> = { function: 'Function call', handler: 'Trigger handler', cron: 'Cron tick', test: 'Test run' };
  return words[kind] ?? kind;
}
