import { describe, expect, it } from 'vitest';
import { escapeHtml, highlightLines, lineHtml, plainLines, reuseLines, tokenize, type Token, type TokenKind } from '../../src/lib/rhai-highlight';

/** The tokens that are not white space, as [kind, text]. */
const significant = (source: string): [TokenKind, string][] =>
  tokenize(source)
    .filter((t) => !(t.kind === 'plain' && t.text.trim() === ''))
    .map((t) => [t.kind, t.text.trim()]);

const kindsOf = (source: string, kind: TokenKind): string[] => tokenize(source).filter((t) => t.kind === kind).map((t) => t.text);

describe('tokenize', () => {
  it('gives back the source exactly, whatever it is', () => {
    const sources = [
      '',
      'fn handle(req) {\n    #{ status: 200, body: `hi ${req.query["name"] ?? "you"}` }\n}\n',
      '"unterminated\nlet x = 1;',
      '/* unterminated /* nested */',
      '`open ${ template',
      '#"raw "quoted" string"# + ##"two"##',
      '\t\r\n x.y::z 1..5 0xFF_FF 1e9 \'c\' @ $ \\',
    ];
    for (const source of sources) expect(tokenize(source).map((t) => t.text).join('')).toBe(source);
  });

  it('marks keywords, literals and numbers', () => {
    expect(significant('let n = 42; if n > 1.5e3 { return true } else { throw "no" }')).toEqual([
      ['keyword', 'let'], ['plain', 'n'], ['punct', '='], ['number', '42'], ['punct', ';'],
      ['keyword', 'if'], ['plain', 'n'], ['punct', '>'], ['number', '1.5e3'], ['punct', '{'],
      ['keyword', 'return'], ['keyword', 'true'], ['punct', '}'], ['keyword', 'else'], ['punct', '{'],
      ['keyword', 'throw'], ['string', '"no"'], ['punct', '}'],
    ]);
    for (const word of ['fn', 'const', 'while', 'loop', 'for', 'in', 'try', 'catch', 'false']) {
      expect(kindsOf(`${word} `, 'keyword')).toEqual([word]);
    }
    expect(kindsOf('0x1F 0b101 0o17 1_000 3.25', 'number')).toEqual(['0x1F', '0b101', '0o17', '1_000', '3.25']);
    // A range is two numbers, not a float.
    expect(kindsOf('for i in 1..5 {}', 'number')).toEqual(['1', '5']);
  });

  it('does not take words that contain keywords for keywords', () => {
    expect(kindsOf('let lettuce = format; let iffy = 1;', 'keyword')).toEqual(['let', 'let']);
  });

  it('marks comments, line and block, nested blocks included', () => {
    expect(kindsOf('x // the rest "not a string"\ny', 'comment')).toEqual(['// the rest "not a string"']);
    expect(kindsOf('a /* one /* two */ still */ b', 'comment')).toEqual(['/* one /* two */ still */']);
    expect(kindsOf('"// not a comment"', 'comment')).toEqual([]);
  });

  it('marks strings with escapes, characters and raw strings', () => {
    expect(kindsOf('let s = "say \\"hi\\"" + \'c\';', 'string')).toEqual(['"say \\"hi\\""', "'c'"]);
    expect(kindsOf('#"a "b" c"# x', 'string')).toEqual(['#"a "b" c"#']);
    // An unterminated string ends at its line.
    expect(kindsOf('"open\nlet x', 'string')).toEqual(['"open']);
    expect(kindsOf('"open\nlet x', 'keyword')).toEqual(['let']);
  });

  it('highlights the code inside a backtick template', () => {
    const tokens = tokenize('`order ${event.data.id} of ${if x { "a" } else { `b` }}!`');
    expect(tokens.map((t) => [t.kind, t.text])).toEqual([
      ['string', '`order '],
      ['interpolation', '${'],
      ['plain', 'event'], ['punct', '.'], ['plain', 'data'], ['punct', '.'], ['plain', 'id'],
      ['interpolation', '}'],
      ['string', ' of '],
      ['interpolation', '${'],
      ['keyword', 'if'], ['plain', ' x '], ['punct', '{'], ['plain', ' '], ['string', '"a"'], ['plain', ' '], ['punct', '}'],
      ['plain', ' '], ['keyword', 'else'], ['plain', ' '], ['punct', '{'], ['plain', ' '], ['string', '`b`'], ['plain', ' '], ['punct', '}'],
      ['interpolation', '}'],
      ['string', '!`'],
    ]);
    // A map literal's braces inside ${…} do not end it.
    expect(kindsOf('`${#{a: 1}.a} done`', 'string')).toEqual(['`', ' done`']);
    // A doubled backtick stays inside the template.
    expect(kindsOf('`a``b` c', 'string')).toEqual(['`a``b`']);
  });

  it('marks module paths and function names', () => {
    expect(significant('let t = pubsub::subscriber_token(["orders"], 600);')).toEqual([
      ['keyword', 'let'], ['plain', 't'], ['punct', '='],
      ['module', 'pubsub'], ['punct', '::'], ['function', 'subscriber_token'],
      ['punct', '(['], ['string', '"orders"'], ['punct', '],'], ['number', '600'], ['punct', ');'],
    ]);
    expect(kindsOf('fn handle(req) { log::info("x"); helper (1) }', 'function')).toEqual(['handle', 'info', 'helper']);
    expect(kindsOf('a::b::c()', 'module')).toEqual(['a', 'b']);
  });
});

describe('highlightLines', () => {
  it('has one entry per line and cuts tokens spanning lines', () => {
    const source = 'let a = 1; /* one\ntwo */ let b\n\n`x\ny`';
    const lines = highlightLines(source);
    expect(lines.length).toBe(source.split('\n').length);
    const text = (line: Token[] | undefined) => (line ?? []).map((t) => t.text).join('');
    expect(lines.map(text)).toEqual(source.split('\n'));
    expect(lines[1]?.[0]).toEqual({ kind: 'comment', text: 'two */' });
    expect(lines[2]).toEqual([]);
    expect(lines[4]).toEqual([{ kind: 'string', text: 'y`' }]);
  });

  it('keeps the arrays of the lines an edit did not change', () => {
    const before = highlightLines('let a = 1;\nlet b = 2;\n\nx\n');
    // A line typed at the top: every old line is kept, moved down one.
    const inserted = reuseLines(before, highlightLines('// new\nlet a = 1;\nlet b = 2;\n\nx\n'));
    expect(inserted.slice(1)).toEqual(before);
    before.forEach((line, k) => expect(inserted[k + 1]).toBe(line));
    expect(before).not.toContain(inserted[0]);
    // A line changed in the middle: the others are kept.
    const changed = reuseLines(before, highlightLines('let a = 1;\nlet b = 3;\n\nx\n'));
    expect([0, 2, 3, 4].map((k) => changed[k] === before[k])).toEqual([true, true, true, true]);
    expect(changed[1]).not.toBe(before[1]);
    // Equal lines: each old array is used once at most.
    const twice = highlightLines('x\nx');
    const thrice = reuseLines(twice, highlightLines('x\nx\nx'));
    expect(new Set(thrice).size).toBe(3);
    expect(thrice.map((l) => l.map((t) => t.text).join(''))).toEqual(['x', 'x', 'x']);
  });

  it('has a plain form of the same shape, for sources too large to highlight', () => {
    expect(plainLines('let a\n\nb')).toEqual([[{ kind: 'plain', text: 'let a' }], [], [{ kind: 'plain', text: 'b' }]]);
  });

  it('keeps markup in the source as text', () => {
    const lines = highlightLines('let x = "<img src=x onerror=alert(1)>";');
    expect(lines[0]?.find((t) => t.kind === 'string')?.text).toBe('"<img src=x onerror=alert(1)>"');
  });
});

describe('lineHtml', () => {
  it('wraps highlighted tokens in spans and escapes everything', () => {
    const [line] = highlightLines('let s = "<b>&\'</b>"; // a<script>');
    expect(lineHtml(line ?? [])).toBe(
      '<span class="tok-keyword">let</span> s <span class="tok-punct">=</span> ' +
        '<span class="tok-string">&quot;&lt;b&gt;&amp;&#39;&lt;/b&gt;&quot;</span><span class="tok-punct">;</span> ' +
        '<span class="tok-comment">// a&lt;script&gt;</span>',
    );
    expect(lineHtml([])).toBe(' ');
    expect(escapeHtml('<a href="x">\'&\'</a>')).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });

  it('leaves no markup of the source in the page: parsed, the HTML holds the source as text', () => {
    const nasty = '"</span><img src=x onerror=alert(1)>" /* <script>alert(2)</script> */ `${"<svg onload=alert(3)>"}`';
    const holder = document.createElement('div');
    holder.innerHTML = highlightLines(nasty).map((l) => lineHtml(l)).join('\n');
    expect(holder.querySelector('img, script, svg')).toBeNull();
    expect([...holder.querySelectorAll('*')].every((el) => el.tagName === 'SPAN' && el.className.startsWith('tok-'))).toBe(true);
    expect(holder.textContent).toBe(nasty);
  });
});
