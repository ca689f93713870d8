/** The rule for app ids, as the server enforces it (`AppId::parse`), told in words. */

/** The rule in one sentence, for the form's hint. */
export const APP_ID_RULE = '2–63 characters: lower-case letters a–z, digits and -, starting with a letter, not ending with -.';

/** What is wrong with `id` as an app id, in a sentence, or '' when it is a valid id. */
export function appIdProblem(id: string): string {
  if (id.length < 2 || id.length > 63) return `An app id is 2–63 characters long; this one has ${id.length}.`;
  const bad = [...id].find((c) => !/[a-z0-9-]/.test(c));
  if (bad !== undefined) {
    const hint = /[A-Z]/.test(bad) ? ` (use lower case: ${bad.toLowerCase()})` : '';
    return `An app id may hold only a–z, 0–9 and -, not “${bad}”${hint}.`;
  }
  if (!/[a-z]/.test(id[0] ?? '')) return 'An app id starts with a letter a–z.';
  if (id.endsWith('-')) return 'An app id does not end with -.';
  return '';
}
