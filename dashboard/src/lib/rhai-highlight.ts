/**
 * Syntax highlighting for Rhai, the scripts' language: a tokenizer that splits source into
 * kinds of text, and the same split into lines for the editor. Pure and total: any input
 * tokenizes (unterminated strings and comments run to their natural end), and the tokens'
 * texts joined are exactly the source. A line becomes HTML only through {@link lineHtml},
 * which escapes every character of the source that could start markup.
 *
 * It runs on every keystroke, so it makes one pass and few objects.
 */

export type TokenKind =
  | 'plain' // identifiers, white space
  | 'keyword' // fn let const if … and true false
  | 'string' // "…", '…', #"…"#, and the text parts of `…` templates
  | 'interpolation' // the ${ and } around a template's expression
  | 'number'
  | 'comment' // // … and /* … */ (nested, as Rhai allows)
  | 'module' // the `pubsub` of `pubsub::publish`
  | 'function' // a called or defined function's name
  | 'punct'; // operators and punctuation

export interface Token {
  kind: TokenKind;
  text: string;
}

export const KEYWORDS: ReadonlySet<string> = new Set([
  'fn', 'let', 'const', 'if', 'else', 'switch', 'do', 'while', 'until', 'loop', 'for', 'in',
  'return', 'throw', 'try', 'catch', 'break', 'continue', 'import', 'export', 'as',
  'private', 'this', 'global', 'true', 'false',
]);

const IDENT = /[A-Za-z_][A-Za-z0-9_]*/y;
const NUMBER = /0x[0-9A-Fa-f_]+|0o[0-7_]+|0b[01_]+|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?/y;
const SPACE = /\s+/y;

type Emit = (kind: TokenKind, text: string) => void;

/** Runs of plain text or punctuation are one span: fewer nodes, same look. */
const MERGES: ReadonlySet<TokenKind> = new Set(['plain', 'punct']);

/** Appends a token to `tokens`, merging it into the last one where that looks the same. */
function append(tokens: Token[], kind: TokenKind, text: string): void {
  if (!text) return;
  const last = tokens[tokens.length - 1];
  if (last && last.kind === kind && MERGES.has(kind)) last.text += text;
  else tokens.push({ kind, text });
}

/** Splits Rhai source into tokens whose texts, joined, are the source. */
export function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  scan(source, (kind, text) => append(tokens, kind, text));
  return tokens;
}

/** The tokens of each line of `source` (as many lines as `source.split('\n')` has);
 * tokens spanning lines (comments, templates) are cut at the line breaks. */
export function highlightLines(source: string): Token[][] {
  let line: Token[] = [];
  const lines: Token[][] = [line];
  scan(source, (kind, text) => {
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      append(line, kind, text.slice(start, nl));
      line = [];
      lines.push(line);
      start = nl + 1;
    }
    append(line, kind, start === 0 ? text : text.slice(start));
  });
  return lines;
}

/** The scanner: hands each token to `emit`, in order. */
function scan(source: string, emit: Emit): void {
  const n = source.length;
  let i = 0;
  /** The last token that is not white space, and the last token. */
  let significantKind: TokenKind | undefined;
  let significantText = '';
  let lastText = '';

  const push = (kind: TokenKind, text: string): void => {
    if (!text) return;
    if (kind !== 'plain' || text.trim() !== '') {
      significantKind = kind;
      significantText = text;
    }
    lastText = text;
    emit(kind, text);
  };

  const match = (pattern: RegExp, at: number): string | undefined => {
    pattern.lastIndex = at;
    return pattern.exec(source)?.[0];
  };

  /** From `i` to the end of the line (not including the line break). */
  const restOfLine = (): string => {
    const end = source.indexOf('\n', i);
    return source.slice(i, end === -1 ? n : end);
  };

  /** A `"…"` or `'…'` literal: escapes (a `\` before a line break continues the line);
   * an unescaped line break ends an unterminated one. */
  const quoted = (quote: string): void => {
    const start = i;
    i += 1;
    while (i < n) {
      const c = source[i];
      if (c === '\\') {
        i += 2;
      } else if (c === quote) {
        i += 1;
        break;
      } else if (c === '\n') {
        break;
      } else {
        i += 1;
      }
    }
    i = Math.min(i, n);
    push('string', source.slice(start, i));
  };

  /** A raw string `#"…"#` (any number of `#`, matched at the end). */
  const raw = (hashes: number): void => {
    const close = `"${'#'.repeat(hashes)}`;
    const end = source.indexOf(close, i + hashes + 1);
    const stop = end === -1 ? n : end + close.length;
    push('string', source.slice(i, stop));
    i = stop;
  };

  /** A block comment, nested as Rhai nests them; unterminated ones run to the end. */
  const blockComment = (): void => {
    const start = i;
    let depth = 0;
    while (i < n) {
      if (source.startsWith('/*', i)) {
        depth += 1;
        i += 2;
      } else if (source.startsWith('*/', i)) {
        depth -= 1;
        i += 2;
        if (depth === 0) break;
      } else {
        i += 1;
      }
    }
    push('comment', source.slice(start, i));
  };

  /** A backtick template: literal text (a doubled backtick is one backtick), with
   * `${ expression }` parts highlighted as code. */
  const template = (): void => {
    let start = i;
    i += 1;
    while (i < n) {
      if (source.startsWith('``', i)) {
        i += 2;
      } else if (source[i] === '`') {
        i += 1;
        break;
      } else if (source.startsWith('${', i)) {
        push('string', source.slice(start, i));
        push('interpolation', '${');
        i += 2;
        code(true);
        if (source[i] === '}') {
          push('interpolation', '}');
          i += 1;
        }
        start = i;
      } else {
        i += 1;
      }
    }
    push('string', source.slice(start, i));
  };

  /** Code, up to the end, or (inside a template's `${…}`) up to its closing brace. */
  const code = (interpolated: boolean): void => {
    let braces = 0;
    while (i < n) {
      const c = source[i] as string;
      if (c === '}' && interpolated && braces === 0) return;

      const space = match(SPACE, i);
      if (space) {
        push('plain', space);
        i += space.length;
        continue;
      }
      if (source.startsWith('//', i)) {
        const text = restOfLine();
        push('comment', text);
        i += text.length;
        continue;
      }
      if (source.startsWith('/*', i)) {
        blockComment();
        continue;
      }
      if (c === '"' || c === "'") {
        quoted(c);
        continue;
      }
      if (c === '`') {
        template();
        continue;
      }
      if (c === '#') {
        const hashes = match(/#+/y, i)?.length ?? 1;
        if (source[i + hashes] === '"') {
          raw(hashes);
          continue;
        }
        if (source[i + 1] === '{') {
          push('punct', '#{');
          braces += 1;
          i += 2;
          continue;
        }
      }
      if (c >= '0' && c <= '9') {
        const number = match(NUMBER, i) as string;
        push('number', number);
        i += number.length;
        continue;
      }
      const ident = match(IDENT, i);
      if (ident) {
        identifier(ident);
        continue;
      }
      if (c === '{') braces += 1;
      if (c === '}') braces -= 1;
      push('punct', c);
      i += 1;
    }
  };

  /** An identifier at `i`: a keyword, a `module::path`, a function's name, or plain. */
  const identifier = (first: string): void => {
    let name = first;
    // `a::b::c`: every segment before the last is a module.
    for (;;) {
      const after = i + name.length;
      const next = source.startsWith('::', after) ? match(IDENT, after + 2) : undefined;
      if (!next) break;
      push('module', name);
      push('punct', '::');
      i = after + 2;
      name = next;
    }
    const qualified = lastText.endsWith('::');
    const called = /^\s*\(/.test(source.slice(i + name.length, i + name.length + 40));
    let kind: TokenKind = 'plain';
    if (KEYWORDS.has(name) && !qualified) kind = 'keyword';
    else if (called || (significantKind === 'keyword' && significantText === 'fn')) kind = 'function';
    push(kind, name);
    i += name.length;
  };

  code(false);
}


/** Beyond this many characters the editor shows source unhighlighted: tokenizing runs on
 * every keystroke, and a script near the 256 KiB limit takes a noticeable moment. */
export const HIGHLIGHT_LIMIT = 100_000;

/** The lines of `source` as plain text, in the shape of {@link highlightLines}. */
export function plainLines(source: string): Token[][] {
  return source.split('\n').map((text) => (text ? [{ kind: 'plain', text }] : []));
}

function sameLine(a: readonly Token[], b: readonly Token[]): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k += 1) {
    const x = a[k] as Token;
    const y = b[k] as Token;
    if (x.kind !== y.kind || x.text !== y.text) return false;
  }
  return true;
}

/**
 * `next`, with the lines before and after what an edit changed (the longest equal head
 * and tail) replaced by `previous`'s arrays for them: a renderer keyed by the arrays then
 * redraws only the changed lines, though the ones after them moved.
 */
export function reuseLines(previous: readonly Token[][], next: Token[][]): Token[][] {
  const most = Math.min(previous.length, next.length);
  let head = 0;
  while (head < most && sameLine(previous[head] as Token[], next[head] as Token[])) head += 1;
  let tail = 0;
  while (tail < most - head && sameLine(previous[previous.length - 1 - tail] as Token[], next[next.length - 1 - tail] as Token[])) tail += 1;
  const lines = next.slice();
  for (let k = 0; k < head; k += 1) lines[k] = previous[k] as Token[];
  for (let k = 1; k <= tail; k += 1) lines[lines.length - k] = previous[previous.length - k] as Token[];
  return lines;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe to put in HTML, as an element's content or a quoted attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

const htmlOfLine = new WeakMap<readonly Token[], string>();

/** One line's tokens as HTML: a span per highlighted token, plain text bare, all of it
 * escaped; an empty line is a space, so it keeps its height. Remembered per array (see
 * {@link reuseLines}), so an unchanged line is not built again. */
export function lineHtml(line: readonly Token[]): string {
  let html = htmlOfLine.get(line);
  if (html === undefined) {
    html = line.length === 0
      ? ' '
      : line.map((t) => (t.kind === 'plain' ? escapeHtml(t.text) : `<span class="tok-${t.kind}">${escapeHtml(t.text)}</span>`)).join('');
    htmlOfLine.set(line, html);
  }
  return html;
}
