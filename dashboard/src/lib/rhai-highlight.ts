/**
 * Syntax highlighting for Rhai, the scripts' language: a tokenizer that splits source into
 * kinds of text, and the same split into lines for the editor. Pure and total: any input
 * tokenizes (unterminated strings and comments run to their natural end), and the tokens'
 * texts joined are exactly the source. The editor renders tokens as text nodes, never as
 * HTML, so a script's source cannot inject markup.
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

/** Splits Rhai source into tokens whose texts, joined, are the source. */
export function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  const n = source.length;
  let i = 0;

  /** The last token that is not white space. */
  let significant: Token | undefined;

  const push = (kind: TokenKind, text: string): void => {
    if (!text) return;
    if (kind !== 'plain' || text.trim() !== '') significant = { kind, text };
    const last = tokens.at(-1);
    // Runs of plain text or punctuation are one span: fewer nodes, same look.
    if (last && last.kind === kind && (kind === 'plain' || kind === 'punct')) last.text += text;
    else tokens.push({ kind, text });
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
    const qualified = tokens.at(-1)?.text.endsWith('::') ?? false;
    const called = /^\s*\(/.test(source.slice(i + name.length, i + name.length + 40));
    let kind: TokenKind = 'plain';
    if (KEYWORDS.has(name) && !qualified) kind = 'keyword';
    else if (called || (significant?.kind === 'keyword' && significant.text === 'fn')) kind = 'function';
    push(kind, name);
    i += name.length;
  };

  code(false);
  return tokens;
}

/** The tokens of each line of `source` (as many lines as `source.split('\n')` has);
 * tokens spanning lines (comments, templates) are cut at the line breaks. */
export function highlightLines(source: string): Token[][] {
  const lines: Token[][] = [[]];
  for (const token of tokenize(source)) {
    const parts = token.text.split('\n');
    parts.forEach((text, index) => {
      if (index > 0) lines.push([]);
      if (text) (lines.at(-1) as Token[]).push({ kind: token.kind, text });
    });
  }
  return lines;
}
