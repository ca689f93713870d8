// Generates src/generated/openapi.ts from the server's OpenAPI document
// (docs/openapi.json): `npm run generate`. scripts/test.sh fails when the committed
// file differs from what this writes.
import { writeFile } from 'node:fs/promises';
import openapiTS, { astToString } from 'openapi-typescript';

const source = new URL('../../../docs/openapi.json', import.meta.url);
const target = new URL('../src/generated/openapi.ts', import.meta.url);

const header = `/**
 * The PiCloud HTTP API's wire types, generated from docs/openapi.json by openapi-typescript:
 * run \`npm run generate\` in clients/typescript. Do not edit by hand.
 */

`;

// Optional stays optional even with a default: the same schemas type request bodies.
const ast = await openapiTS(source, { defaultNonNullable: false });
await writeFile(target, header + astToString(ast));
