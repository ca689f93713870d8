/**
 * The HTTP API's JSON shapes (snake_case, as sent), generated from the server's OpenAPI
 * document: see src/generated/openapi.ts.
 */

import type { components, paths } from './generated/openapi.js';

/** A schema of the HTTP API by name, e.g. `WireSchema<'Topic'>`. */
export type WireSchema<Name extends keyof components['schemas']> = components['schemas'][Name];

/** Every route of the HTTP API: path template → method → parameters, body and responses. */
export type WirePaths = paths;

/** A request body of type `T` whose optional fields may also hold `undefined`, which JSON
 * leaves out. */
export type Body<T> = { [K in keyof T]: T[K] | (undefined extends T[K] ? undefined : never) };
