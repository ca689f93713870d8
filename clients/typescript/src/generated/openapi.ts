/**
 * The PiCloud HTTP API's wire types, generated from docs/openapi.json by openapi-typescript:
 * run `npm run generate` in clients/typescript. Do not edit by hand.
 */

export interface paths {
    "/healthz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The process is up. */
        get: operations["healthz"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/metrics": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Prometheus metrics in the text exposition format. */
        get: operations["metrics"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/openapi.json": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** This API's OpenAPI 3.1 document. */
        get: operations["openapi"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/readyz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * The process can serve: its database answers, and its writes are not failing (a
         *     publish that failed in the database, say on a full disk, keeps this 503 until a write
         *     commits again or the failure is a few seconds old).
         */
        get: operations["readyz"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/admin/session": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Who is signed in, with the session's CSRF token (the dashboard calls this on load). */
        get: operations["current_session"];
        put?: never;
        /** Signs an admin in: sets the session cookie and returns the CSRF token. */
        post: operations["sign_in"];
        /** Signs out: ends the session and clears the cookie. */
        delete: operations["sign_out"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/admin/stats": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * The overview series over the last hour, one sample per interval: publishes,
         *     deliveries ok and failed, dead letters, SSE streams (this node) and the outbox
         *     backlog, of one app or of the whole instance.
         */
        get: operations["stats"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Lists every app. */
        get: operations["list_apps"];
        put?: never;
        /** Creates an app. */
        post: operations["create_app"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Gets one app. */
        get: operations["get_app"];
        put?: never;
        post?: never;
        /** Deletes an app and everything it owns. */
        delete: operations["delete_app"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/dead-letters": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Lists dead letters. */
        get: operations["list_dead_letters"];
        put?: never;
        post?: never;
        /** Purges every dead letter of the app. */
        delete: operations["purge_dead_letters"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/dead-letters/replay": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Replays a selection of dead letters (or every one not replayed yet), paced. A
         *     selection may hold an outbox source's dead letters: their rows are published again
         *     (at once, not paced), and if one still cannot be published the request is a 400 and
         *     nothing is replayed. Without a selection, only deliveries are replayed: a source's
         *     refused rows usually need fixing first, so replay those by id.
         */
        post: operations["replay_dead_letters"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/dead-letters/{dead_letter_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** One dead letter with its event. */
        get: operations["get_dead_letter"];
        put?: never;
        post?: never;
        /** Purges one dead letter. */
        delete: operations["purge_dead_letter"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/dead-letters/{dead_letter_id}/replay": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Replays one dead letter now. */
        post: operations["replay_dead_letter"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/deliveries": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Lists deliveries, newest first.
         * @description A finished delivery stays listed, with its attempts, for the server's delivery
         *     history after it finished (`--delivery-history-days`, 30 days by default); pending
         *     deliveries and dead letters are never pruned.
         */
        get: operations["list_deliveries"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/deliveries/{delivery_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** One delivery with its attempts. */
        get: operations["get_delivery"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/deliveries/{delivery_id}/retry": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Sends a failed or dead delivery again, with a fresh attempt budget. */
        post: operations["retry_delivery"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/events": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Publishes several events, of one or many topics, atomically. */
        post: operations["publish_batch"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/functions/{script}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Calls script `{script}` as an HTTP function (GET). */
        get: operations["call_function_get"];
        put?: never;
        /** Calls script `{script}` as an HTTP function (POST, any body). */
        post: operations["call_function_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/keys": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Lists an app's keys. */
        get: operations["list_app_keys"];
        put?: never;
        /** Creates a key for an app. */
        post: operations["create_app_key"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/keys/{key_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /** Revokes one of an app's keys. Revoking twice is harmless. */
        delete: operations["revoke_app_key"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/realtime": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Subscribes to topics as a Server-Sent-Events stream (see docs/realtime-protocol.md). */
        get: operations["subscribe"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/realtime/keys/rotate": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Rotates the app's subscriber-token signing key. */
        post: operations["rotate_keys"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/realtime/subscribers": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Who is listening now, on this node (each node of a cluster counts its own). */
        get: operations["live_subscribers"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/scripts": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Lists the app's scripts. */
        get: operations["list_scripts"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/scripts/{script}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Gets a script with the source of its current version. */
        get: operations["get_script"];
        /** Saves a script: compiles it, then stores it as its next version. */
        put: operations["save_script"];
        post?: never;
        /** Deletes a script with all its versions. */
        delete: operations["delete_script"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/scripts/{script}/runs": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Lists a script's last runs, newest first: how each went, its error and what it
         *     logged. The log keeps each app's newest runs (`PICLOUD_SCRIPT_RUN_LOG`), and a run
         *     shows up moments after it ends.
         */
        get: operations["list_script_runs"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/scripts/{script}/test": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Runs a script once, as a function or a handler, and answers with what it did. */
        post: operations["test_script"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/scripts/{script}/versions": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Lists a script's saved versions, newest first. */
        get: operations["list_script_versions"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/scripts/{script}/versions/{version}/restore": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Restores a saved version: saves its source again as the newest version. */
        post: operations["restore_script_version"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/sources": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Lists an app's sources with their status. */
        get: operations["list_sources"];
        put?: never;
        /**
         * Adds an outbox source to an app. PiCloud starts relaying it at once (within a second
         *     or so); its status tells whether the relay could connect.
         */
        post: operations["create_source"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/sources/{source_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Gets one source with its status. */
        get: operations["get_source"];
        put?: never;
        post?: never;
        /** Deletes a source. Rows still waiting in the app's outbox stay there. */
        delete: operations["delete_source"];
        options?: never;
        head?: never;
        /** Enables or disables a source's relay. */
        patch: operations["update_source"];
        trace?: never;
    };
    "/v1/apps/{app}/subscriber-tokens": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Mints a subscriber token (`pubsub::subscriber_token`) for the app's browsers. */
        post: operations["create_subscriber_token"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/topics": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Lists the app's topics. */
        get: operations["list_topics"];
        put?: never;
        /** Registers a topic (not external until flipped). */
        post: operations["create_topic"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/topics/{topic}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Gets one topic. */
        get: operations["get_topic"];
        put?: never;
        post?: never;
        /** Deletes a topic with its whole log and pending deliveries. */
        delete: operations["delete_topic"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/topics/{topic}/events": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Reads a topic's log in seq order. */
        get: operations["read_events"];
        put?: never;
        /** Publishes one event. It is durable when this answers 201. */
        post: operations["publish"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/topics/{topic}/external": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        /** Flips whether browsers may subscribe to the topic. */
        patch: operations["set_external"];
        trace?: never;
    };
    "/v1/apps/{app}/triggers": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Lists an app's triggers. */
        get: operations["list_triggers"];
        put?: never;
        /**
         * Creates a trigger. The response holds its signing secret. A webhook URL whose host is
         *     a refused address (loopback, private, link-local, reserved: the delivery-time SSRF
         *     policy), resolves to one, or does not resolve within 2 s is refused with 400.
         */
        post: operations["create_trigger"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/triggers/{trigger_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Gets one trigger. */
        get: operations["get_trigger"];
        put?: never;
        post?: never;
        /** Deletes a trigger and its pending deliveries. */
        delete: operations["delete_trigger"];
        options?: never;
        head?: never;
        /**
         * Changes a trigger: only the fields given change. Enabling clears `disabled_reason`. A
         *     new webhook URL is checked as at creation.
         */
        patch: operations["update_trigger"];
        trace?: never;
    };
    "/v1/apps/{app}/triggers/{trigger_id}/secret": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Reveals a trigger's current signing secret. */
        get: operations["reveal_trigger_secret"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/apps/{app}/triggers/{trigger_id}/secret/rotate": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Replaces a trigger's signing secret. The old one keeps signing alongside it for 24 hours. */
        post: operations["rotate_trigger_secret"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/keys": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Lists instance keys. */
        get: operations["list_instance_keys"];
        put?: never;
        /** Creates an instance key (`instance:admin`: manages apps and keys only). */
        post: operations["create_instance_key"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/keys/{key_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /** Revokes an instance key. */
        delete: operations["revoke_instance_key"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /** @description An admin account as listed: never its password hash. */
        Admin: {
            /** @description The sign-in email, lower-cased. */
            email: string;
            /** @description Stable id. */
            id: string;
        };
        /** @description An API key as listed: never its secret. */
        ApiKey: {
            /** @description The owning app; `null` for instance keys. */
            app?: string | null;
            /**
             * Format: int64
             * @description Creation time, ms since the epoch.
             */
            created_at: number;
            /** @description Stable id, used to revoke the key. */
            id: string;
            /**
             * Format: int64
             * @description Last successful use, ms since the epoch, updated at most every few seconds.
             */
            last_used_at?: number | null;
            /** @description What the key is for. */
            name: string;
            /** @description The first characters of the secret, to recognise it. */
            prefix: string;
            /**
             * Format: int64
             * @description When the key was revoked, if it was.
             */
            revoked_at?: number | null;
            /** @description What the key may do. */
            scopes: components["schemas"]["Scope"][];
        };
        /** @description An app as stored and as the API shows it. */
        App: {
            /**
             * Format: int64
             * @description Creation time, milliseconds since the epoch.
             */
            created_at: number;
            /** @description The app's slug, used in every URL under `/v1/apps/{app}`. */
            id: components["schemas"]["AppId"];
            /** @description A display name. */
            name: string;
        };
        AppId: string;
        /** @description A list of apps. */
        AppList: {
            /** @description The apps, by id. */
            apps: components["schemas"]["App"][];
        };
        /** @description One attempt of a delivery. */
        Attempt: {
            /**
             * Format: int64
             * @description 1 for the first attempt.
             */
            attempt: number;
            /**
             * Format: int64
             * @description Duration, ms.
             */
            duration_ms: number;
            /**
             * @description What went wrong; without `deliveries:manage` only its class (`http_status`,
             *     `timeout`, `connect_failed`, `refused_address`, `request_failed`, `script_failed`,
             *     `delivery_failed`).
             */
            error?: string | null;
            /**
             * @description The first KiB of the response body, kept only for JSON and plain-text answers;
             *     shown only with `deliveries:manage`.
             */
            response_body?: string | null;
            /**
             * Format: int64
             * @description The response body's size in bytes: as the receiver declared it, or as read when
             *     it ended within 64 KiB; `null` when unknown or no response came. Shown to every
             *     reader.
             */
            response_bytes?: number | null;
            /**
             * Format: int64
             * @description Start, ms.
             */
            started_at: number;
            /**
             * Format: int64
             * @description HTTP status, if a response came.
             */
            status_code?: number | null;
        };
        /**
         * @description How browsers authenticate to subscribe to an external topic.
         * @enum {string}
         */
        AuthMode: "public" | "token";
        /** @description Answer to a batch publish. */
        BatchAnswer: {
            /** @description One entry per event, in request order. */
            events: components["schemas"]["PublishedEvent"][];
        };
        /** @description Body of a batch publish: all events commit together or none does. */
        BatchBody: {
            /** @description The events, in order; they may name different topics. */
            events: components["schemas"]["BatchEvent"][];
        };
        /** @description One event of a batch. */
        BatchEvent: {
            /** @description Any JSON value, nested at most 64 arrays/objects deep. */
            data: unknown;
            /** @description The topic. */
            topic: string;
            /** @description Event type; `message` if absent. */
            type?: string | null;
        };
        /**
         * @description What a cron trigger does about ticks that passed while no node was running.
         * @enum {string}
         */
        CatchUp: "one" | "none";
        /**
         * @description A trigger's circuit breaker, maintained by the dispatcher.
         * @enum {string}
         */
        CircuitState: "closed" | "open" | "half_open";
        /** @description How many were replayed or purged. */
        Count: {
            /**
             * Format: int64
             * @description The number.
             */
            count: number;
        };
        /** @description Body of `POST /v1/apps`. */
        CreateApp: {
            /** @description The app's slug: 2-63 of `a-z 0-9 -`, starting with a letter. */
            id: components["schemas"]["AppId"];
            /** @description A display name; defaults to the id. */
            name?: string | null;
        };
        /** @description Body of `POST /v1/apps/{app}/keys`. */
        CreateAppKey: {
            /** @description What the key is for. */
            name: string;
            /** @description App scopes the key holds (not `instance:admin`). */
            scopes: components["schemas"]["Scope"][];
        };
        /** @description Body of `POST /v1/keys`. */
        CreateInstanceKey: {
            /** @description What the key is for. */
            name: string;
            /** @description Optional; if given, exactly `["instance:admin"]`. */
            scopes?: components["schemas"]["Scope"][] | null;
        };
        /** @description Body of `POST /v1/apps/{app}/topics`. */
        CreateTopic: {
            auth_mode?: null | components["schemas"]["AuthMode"];
            /** @description 1-200 characters of letters, digits and `. _ - : /`. */
            name: components["schemas"]["TopicName"];
            retention?: null | components["schemas"]["Retention"];
        };
        /** @description A created key. `key` is the secret: this response is the only time it is shown. */
        CreatedKeyResponse: {
            /** @description The owning app, `null` for instance keys. */
            app?: string | null;
            /**
             * Format: int64
             * @description Creation time, ms since the epoch.
             */
            created_at: number;
            /** @description The key's id. */
            id: string;
            /** @description The secret, to send as `Authorization: Bearer <key>`. */
            key: string;
            /** @description The key's name. */
            name: string;
            /** @description The display prefix. */
            prefix: string;
            /** @description The key's scopes. */
            scopes: components["schemas"]["Scope"][];
        };
        /** @description A new trigger and its signing secret. */
        CreatedTrigger: components["schemas"]["Trigger"] & {
            /** @description The signing secret, `whsec_` and base64. Also available later through reveal. */
            secret: string;
        };
        /** @example *\/5 * * * * */
        CronPattern: string;
        /** @description A dead letter: a delivery whose attempts were exhausted. */
        DeadLetter: {
            /**
             * Format: int64
             * @description Attempts made.
             */
            attempts: number;
            /**
             * Format: int64
             * @description Dead-lettered at, ms.
             */
            created_at: number;
            /**
             * Format: int64
             * @description Id.
             */
            id: number;
            /** @description The last error. */
            last_error?: string | null;
            /**
             * Format: int64
             * @description The last HTTP status.
             */
            last_status?: number | null;
            /**
             * Format: int64
             * @description The outbox row that died.
             */
            outbox_id: number;
            /**
             * @description For a row of an outbox source that could not be published (`trigger_id` names
             *     the source, `outbox_id` the row): the row as JSON text (`topic`, `type`, `data`,
             *     `idempotency_key`). Absent for deliveries.
             */
            payload?: string | null;
            /**
             * Format: int64
             * @description Last replayed at, ms.
             */
            replayed_at?: number | null;
            /**
             * Format: int64
             * @description The event's seq.
             */
            seq: number;
            /** @description The event's topic. */
            topic: string;
            /** @description Its trigger. */
            trigger_id: string;
        };
        /** @description A dead letter and its event (if still retained). */
        DeadLetterDetail: components["schemas"]["DeadLetter"] & {
            event?: null | components["schemas"]["LoggedEvent"];
        };
        /** @description A page of dead letters, newest first. */
        DeadLetterList: {
            /** @description The dead letters. */
            dead_letters: components["schemas"]["DeadLetter"][];
        };
        /** @description One delivery: an event (or a dead letter) on its way to one trigger. */
        Delivery: {
            /**
             * Format: int64
             * @description Attempts made (including one in flight).
             */
            attempts: number;
            /**
             * Format: int64
             * @description Created, ms.
             */
            created_at: number;
            /**
             * Format: int64
             * @description Set when this delivers a dead letter to a `dead_letter` trigger.
             */
            dead_letter_id?: number | null;
            /**
             * Format: int64
             * @description Finished (delivered, failed or dead), ms.
             */
            finished_at?: number | null;
            /**
             * Format: int64
             * @description Outbox id (the `webhook-id` is `msg_<id>`).
             */
            id: number;
            /** @description The last error. */
            last_error?: string | null;
            /**
             * Format: int64
             * @description The last HTTP status.
             */
            last_status?: number | null;
            /**
             * Format: int64
             * @description When the next attempt is due, ms.
             */
            next_attempt_at: number;
            /**
             * Format: int64
             * @description The event's seq.
             */
            seq: number;
            /**
             * @description `pending`, `delivered`, `failed` (a dead-letter delivery that gave up) or `dead`.
             * @enum {string}
             */
            state: "pending" | "delivered" | "failed" | "dead";
            /** @description The event's topic. */
            topic: string;
            /** @description The trigger. */
            trigger_id: string;
        };
        /** @description A delivery and its attempts, oldest first. */
        DeliveryDetail: {
            /** @description Its attempts, oldest first. */
            attempts: components["schemas"]["Attempt"][];
            /**
             * Format: int64
             * @description Created, ms.
             */
            created_at: number;
            /**
             * Format: int64
             * @description Set when this delivers a dead letter to a `dead_letter` trigger.
             */
            dead_letter_id?: number | null;
            /**
             * Format: int64
             * @description Finished (delivered, failed or dead), ms.
             */
            finished_at?: number | null;
            /**
             * Format: int64
             * @description Outbox id (the `webhook-id` is `msg_<id>`).
             */
            id: number;
            /** @description The last error. */
            last_error?: string | null;
            /**
             * Format: int64
             * @description The last HTTP status.
             */
            last_status?: number | null;
            /**
             * Format: int64
             * @description When the next attempt is due, ms.
             */
            next_attempt_at: number;
            /**
             * Format: int64
             * @description The event's seq.
             */
            seq: number;
            /**
             * @description `pending`, `delivered`, `failed` (a dead-letter delivery that gave up) or `dead`.
             * @enum {string}
             */
            state: "pending" | "delivered" | "failed" | "dead";
            /** @description The event's topic. */
            topic: string;
            /** @description The trigger. */
            trigger_id: string;
        };
        /** @description A page of deliveries, newest first. */
        DeliveryList: {
            /** @description The deliveries. */
            deliveries: components["schemas"]["Delivery"][];
        };
        /** @description The JSON body of every error response. */
        ErrorBody: {
            /** @description The error. */
            error: components["schemas"]["ErrorDetail"];
        };
        /**
         * @description A machine-readable error code; clients match on these, never on messages.
         * @enum {string}
         */
        ErrorCode: "invalid_json" | "invalid_request" | "unsupported_media_type" | "payload_too_large" | "unauthorized" | "forbidden" | "not_found" | "method_not_allowed" | "app_not_found" | "key_not_found" | "app_exists" | "topic_not_found" | "topic_exists" | "admin_exists" | "trigger_not_found" | "delivery_not_found" | "dead_letter_not_found" | "script_not_found" | "source_not_found" | "script_compile_error" | "rate_limited" | "unavailable" | "internal" | "request_timeout" | "headers_too_large";
        /** @description The inside of [`ErrorBody`]. */
        ErrorDetail: {
            /** @description A stable machine-readable code. */
            code: components["schemas"]["ErrorCode"];
            /** @description Column of the error in the submitted source (script compile errors only). */
            column?: number | null;
            /** @description Line of the error in the submitted source (script compile errors only). */
            line?: number | null;
            /** @description A human-readable explanation. */
            message: string;
        };
        /** @description A page of a topic's log. */
        EventPage: {
            /** @description Events in seq order. */
            events: components["schemas"]["LoggedEvent"][];
            /**
             * Format: int64
             * @description The topic's latest seq when read.
             */
            last_seq: number;
        };
        /**
         * @description Who may call a script as an HTTP function.
         * @enum {string}
         */
        FunctionAccess: "key" | "public";
        /** @description Where a trigger delivers. */
        Handler: {
            /** @enum {string} */
            kind: "webhook";
            /** @description The endpoint. */
            url: components["schemas"]["WebhookUrl"];
        } | {
            /** @enum {string} */
            kind: "script";
            /** @description The script's name. */
            script: string;
        };
        /** @description A list of keys. */
        KeyList: {
            /** @description The keys, newest first, revoked ones included. */
            keys: components["schemas"]["ApiKey"][];
        };
        /** @description Live subscribers of an app on this node. */
        LiveSubscribers: {
            /** @description Open streams of the app. */
            streams: number;
            /** @description Per topic with at least one listener: how many streams listen to it. */
            topics: components["schemas"]["TopicSubscribers"][];
        };
        /** @description An event as read back from the log. */
        LoggedEvent: {
            /** @description The published `data`, exactly as sent. */
            data: unknown;
            /** @description Globally unique id. */
            id: string;
            /**
             * Format: int64
             * @description Commit time, ms since the epoch.
             */
            published_at: number;
            /**
             * Format: int64
             * @description Position in the topic's log.
             */
            seq: number;
            /** @description The topic. */
            topic: string;
            /** @description The event type. */
            type: string;
        };
        /** @description A new source. */
        NewSource: {
            /**
             * @description The app database's URL (`postgres://relay:password@host:5432/db`): the role
             *     needs USAGE on the schema and SELECT, DELETE on its outbox (docs/sources.md).
             */
            database_url: string;
            /** @description What it reads: `postgres_outbox`. */
            kind: components["schemas"]["SourceKind"];
            /** @description The outbox schema `picloud sources install` created (default `picloud`). */
            schema?: string | null;
        };
        /** @description What a new trigger is made of; also the body of `POST /v1/apps/{app}/triggers`. */
        NewTrigger: {
            /**
             * @description Whether it fires; `true` if absent.
             * @default true
             */
            enabled?: boolean;
            /** @description Where it delivers. */
            handler: components["schemas"]["Handler"];
            /** @description Deliver one topic's events one at a time, in order; `false` if absent. */
            ordered?: boolean;
            /**
             * @description Limits on how hard deliveries hit the endpoint; 16 in flight, no rate limit if
             *     absent.
             */
            pacing?: components["schemas"]["Pacing"];
            /** @description How failed deliveries are retried; 8 attempts on the standard schedule if absent. */
            retry?: components["schemas"]["RetryPolicyRequest"];
            /** @description What fires it. */
            source: components["schemas"]["TriggerSource"];
        };
        /**
         * @description How hard one node may push deliveries at a trigger's endpoint, so an endpoint coming
         *     back after an outage (or a replay) is not hit by the whole backlog at once.
         */
        Pacing: {
            /**
             * Format: int32
             * @description Most deliveries in flight at once; `null` for no limit beyond the node's workers
             *     (the default).
             */
            max_in_flight?: number | null;
            /**
             * Format: int32
             * @description Most deliveries started per second; `null` for no rate limit (the default).
             */
            max_per_second?: number | null;
        };
        /** @description Body of a single publish. */
        PublishBody: {
            /**
             * @description Any JSON value, nested at most 64 arrays/objects deep; stored and delivered
             *     exactly as sent.
             */
            data: unknown;
            /** @description Event type; `message` if absent. */
            type?: string | null;
        };
        /** @description What a publish of one event answered. */
        PublishedEvent: {
            /**
             * Format: int32
             * @description Outbox rows created: one per enabled trigger matching the topic.
             */
            deliveries: number;
            /** @description The event's id. */
            id: string;
            /**
             * Format: int64
             * @description Commit time, ms since the epoch.
             */
            published_at: number;
            /**
             * Format: int64
             * @description The event's seq in its topic.
             */
            seq: number;
            /** @description The topic. */
            topic: string;
        };
        /** @description Body of a bulk replay. */
        ReplayBody: {
            /** @description These dead letters; or, if absent, every dead letter not replayed yet. */
            ids?: number[] | null;
            /**
             * Format: int32
             * @description Pace: new deliveries per second (default 10, at most 1000).
             */
            per_second?: number | null;
        };
        /**
         * @description How much of a topic's log is kept. An event is pruned once it is beyond either limit,
         *     unless an undelivered outbox row or a dead letter still needs it. `null` means no
         *     limit of that kind.
         */
        Retention: {
            /**
             * Format: int64
             * @description Keep events at most this many seconds.
             */
            max_age_secs?: number | null;
            /**
             * Format: int64
             * @description Keep at most this many latest events.
             */
            max_events?: number | null;
        };
        /**
         * @description How often and when a failed delivery is retried.
         *
         *     `schedule_secs` always holds exactly `max_attempts - 1` delays: the delay before the
         *     2nd attempt, the 3rd, and so on. A shorter schedule (such as the default, Standard
         *     Webhooks' 5 s, 5 min, 30 min, 2 h, 5 h, 10 h) is extended by repeating its last delay.
         *
         *     On the wire both fields are optional: `max_attempts` defaults to 8, `schedule_secs` to
         *     the standard schedule. A given schedule must be non-empty, hold at most 50 delays of
         *     1 s to 7 days each, and no more than `max_attempts - 1` of them.
         */
        RetryPolicy: {
            /**
             * Format: int32
             * @description Delivery attempts in all, 1 to 50.
             */
            max_attempts: number;
            /** @description Seconds to wait before each retry. */
            schedule_secs: number[];
        };
        /**
         * @description A retry policy as a request gives it: either field may be left out (`max_attempts`
         *     defaults to 8, `schedule_secs` to the standard schedule). Responses always hold both
         *     (`RetryPolicy`).
         */
        RetryPolicyRequest: {
            /**
             * Format: int32
             * @description Delivery attempts in all, 1 to 50; 8 if absent.
             */
            max_attempts?: number | null;
            /**
             * @description Seconds to wait before each retry: 1 to 50 delays of 1 s to 7 days, at most
             *     `max_attempts - 1` of them; the standard schedule if absent.
             */
            schedule_secs?: number[] | null;
        };
        /** @description The result of a rotation. */
        RotatedKey: {
            /** @description The new signing key's id. */
            kid: string;
            /**
             * Format: int64
             * @description Until when tokens signed with earlier keys verify, ms since the epoch.
             */
            previous_valid_until: number;
        };
        /** @description A rotated signing secret. */
        RotatedSecret: {
            /**
             * Format: int64
             * @description Until when (ms since the epoch) deliveries are also signed with the old secret.
             */
            previous_secret_expires_at: number;
            /** @description The new secret, used to sign from now on. */
            secret: string;
        };
        /** @description One line a script logged. */
        RunLogLine: {
            /**
             * Format: int64
             * @description Milliseconds since the run started.
             */
            at_ms: number;
            /** @description `debug`, `info`, `warn` or `error`. */
            level: string;
            /** @description What it said. */
            message: string;
        };
        /** @description One sample: what happened during the interval that ended at `at`. */
        Sample: {
            /**
             * Format: int64
             * @description End of the interval, ms since the epoch.
             */
            at: number;
            /**
             * Format: int64
             * @description Dead letters written (all nodes).
             */
            dead_letters: number;
            /**
             * Format: int64
             * @description Webhook delivery attempts that failed (all nodes).
             */
            deliveries_failed: number;
            /**
             * Format: int64
             * @description Webhook delivery attempts answered with a 2xx (all nodes).
             */
            deliveries_ok: number;
            /**
             * Format: int64
             * @description Outbox rows waiting for delivery at `at` (all nodes).
             */
            outbox_pending: number;
            /**
             * Format: int64
             * @description Events published (all nodes).
             */
            publishes: number;
            /**
             * Format: int64
             * @description Open SSE streams on this node at `at`.
             */
            sse_streams: number;
        };
        /** @description Body of `PUT /v1/apps/{app}/scripts/{script}`. */
        SaveScript: {
            access?: null | components["schemas"]["FunctionAccess"];
            /** @description The Rhai source (at most 256 KiB). */
            source: string;
        };
        /**
         * @description What an API key may do. Every route names the scope it needs in [`crate::access`].
         * @enum {string}
         */
        Scope: "instance:admin" | "app:admin" | "app:read" | "pubsub:publish" | "pubsub:token" | "triggers:manage" | "deliveries:manage" | "scripts:manage" | "functions:invoke";
        /** @description A script with the source of its current version. */
        Script: components["schemas"]["ScriptSummary"] & {
            /** @description The source of the current version. */
            source: string;
        };
        /** @description A list of scripts. */
        ScriptList: {
            /** @description The scripts, by name. */
            scripts: components["schemas"]["ScriptSummary"][];
        };
        /** @description A run as the API lists it. */
        ScriptRun: {
            /**
             * Format: int64
             * @description The delivery that ran a trigger handler.
             */
            delivery_id?: number | null;
            /**
             * Format: int64
             * @description Lines logged over the limit, not kept.
             */
            dropped_logs: number;
            /**
             * Format: int64
             * @description How long it ran, in microseconds (0 for a run refused before it started).
             */
            duration_us: number;
            /** @description Why it failed, when it did. */
            error?: string | null;
            /**
             * Format: int64
             * @description The run's id: later runs have larger ids.
             */
            id: number;
            /** @description How it ran: `function`, `handler`, `cron` or `test`. */
            kind: string;
            /** @description What it logged, in order. */
            logs: components["schemas"]["RunLogLine"][];
            /** @description `ok`, `error`, `timeout`, `overloaded` or `stopped`. */
            outcome: string;
            /** @description The `x-request-id` of the HTTP request that ran a function. */
            request_id?: string | null;
            /** @description The script's name. */
            script: string;
            /**
             * Format: int64
             * @description When it started, ms since the epoch.
             */
            started_at: number;
            /**
             * Format: int64
             * @description The version that ran.
             */
            version: number;
        };
        /** @description A page of a script's runs. */
        ScriptRunList: {
            /** @description The runs, newest first. */
            runs: components["schemas"]["ScriptRun"][];
        };
        /** @description A script as listed: its current version and settings, without the source. */
        ScriptSummary: {
            /** @description Who may call it as an HTTP function. */
            access: components["schemas"]["FunctionAccess"];
            /**
             * Format: int64
             * @description First save, ms since the epoch.
             */
            created_at: number;
            /** @description The script's name. */
            name: string;
            /**
             * Format: int64
             * @description Last save or restore, ms since the epoch.
             */
            updated_at: number;
            /**
             * Format: int64
             * @description The current version (1 for the first save).
             */
            version: number;
        };
        /** @description One saved version of a script. */
        ScriptVersion: {
            /**
             * Format: int64
             * @description When it was saved, ms since the epoch.
             */
            created_at: number;
            /** @description Its source. */
            source: string;
            /**
             * Format: int64
             * @description The version number.
             */
            version: number;
        };
        /** @description A script's versions. */
        ScriptVersionList: {
            /** @description The versions, newest first. */
            versions: components["schemas"]["ScriptVersion"][];
        };
        /** @description A signed-in session, as the dashboard sees it. */
        SessionInfo: {
            /** @description Who is signed in. */
            admin: components["schemas"]["Admin"];
            /** @description Send it as `X-CSRF-Token` with every POST, PATCH and DELETE. */
            csrf_token: string;
            /**
             * Format: int64
             * @description When the session ends, ms since the epoch.
             */
            expires_at: number;
        };
        /** @description Body of `PATCH /v1/apps/{app}/topics/{topic}/external`. */
        SetExternal: {
            /** @description Whether browsers may subscribe to the topic. */
            external_subscribable: boolean;
        };
        /** @description Body of `POST /v1/admin/session`. */
        SignIn: {
            /** @description The admin's email (any case). */
            email: string;
            /** @description The admin's password. */
            password: string;
        };
        /** @description A source as the API shows it: never with the database password. */
        Source: {
            /**
             * Format: int64
             * @description Created at, ms since the epoch.
             */
            created_at: number;
            /** @description The app database's URL without its password. */
            database_url: string;
            /** @description Whether a relay runs for it. */
            enabled: boolean;
            /** @description Id (`src_…`). */
            id: string;
            /** @description What it reads. */
            kind: components["schemas"]["SourceKind"];
            /** @description The outbox schema in the app's database. */
            schema: string;
            /** @description The relay's last report. */
            status: components["schemas"]["SourceStatus"];
            /**
             * Format: int64
             * @description Last changed at, ms since the epoch.
             */
            updated_at: number;
        };
        /**
         * @description What kind of database a source reads.
         * @enum {string}
         */
        SourceKind: "postgres_outbox";
        /** @description A list of sources. */
        SourceList: {
            /** @description The app's sources, oldest first. */
            sources: components["schemas"]["Source"][];
        };
        /** @description A change to a source. */
        SourcePatch: {
            /** @description Run its relay (true) or stop it (false). */
            enabled: boolean;
        };
        /** @description How a source's relay is doing, as it last reported (every node answers the same). */
        SourceStatus: {
            /** @description Whether the relay is connected to the app's database. */
            connected: boolean;
            /** @description The last error, if any. */
            last_error?: string | null;
            /**
             * Format: int64
             * @description When it happened, ms since the epoch.
             */
            last_error_at?: number | null;
            /**
             * Format: int64
             * @description Age of the oldest waiting row at the last report, ms.
             */
            oldest_waiting_ms?: number | null;
            /** @description The node running the relay, while its lease lasts. */
            relay_node?: string | null;
            /**
             * Format: int64
             * @description Rows relayed since the source was created (published, replayed or dead-lettered).
             */
            relayed_total: number;
            /**
             * Format: int64
             * @description When the relay last reported, ms since the epoch.
             */
            reported_at?: number | null;
            /**
             * Format: int64
             * @description Rows waiting in the app's outbox at the last report.
             */
            rows_waiting?: number | null;
        };
        /** @description `GET /v1/admin/stats`. */
        StatsSeries: {
            /** @description The app the series is for; `null` for the whole instance. */
            app?: string | null;
            /**
             * Format: int64
             * @description Seconds each sample covers; divide counts by it for rates.
             */
            interval_secs: number;
            /** @description Oldest first. */
            samples: components["schemas"]["Sample"][];
            /**
             * Format: int64
             * @description Seconds of history kept.
             */
            window_secs: number;
        };
        /** @description A health or readiness answer. */
        Status: {
            /** @description `ok` or `ready`. */
            status: string;
        };
        /** @description The request a test run hands to `handle(req)`. */
        TestRequest: {
            /** @description The request body. */
            body?: string;
            /** @description Request headers (a `content-type` of `application/json` fills `req.json`). */
            headers?: {
                [key: string]: string;
            };
            /** @description `GET` or `POST` (default `POST`). */
            method?: string | null;
            /** @description Query parameters. */
            query?: {
                [key: string]: string;
            };
        };
        /** @description Body of a test run: run the script as an HTTP function or as a trigger handler. */
        TestRun: {
            /** @enum {string} */
            kind: "function";
            /** @description The request the function gets (a bare `POST` when absent). */
            request?: components["schemas"]["TestRequest"];
            /** @description Run this source instead of the saved version (it is compiled, not saved). */
            source?: string | null;
        } | {
            /** @description The event envelope, as a webhook would get it. */
            event: unknown;
            /** @enum {string} */
            kind: "handler";
            /** @description Run this source instead of the saved version (it is compiled, not saved). */
            source?: string | null;
        };
        /** @description What a test run did. */
        TestRunResult: {
            /**
             * Format: int64
             * @description Lines logged over the limit, not kept.
             */
            dropped_logs: number;
            /**
             * Format: int64
             * @description How long it ran, in microseconds.
             */
            duration_us: number;
            /** @description Why it failed, with the line and column when the engine knows them. */
            error?: string | null;
            /** @description What it logged. */
            logs: components["schemas"]["RunLogLine"][];
            /** @description `ok`, `error` or `timeout`. */
            outcome: string;
            /**
             * @description What the run returned (a function's response map, a handler's last value); null
             *     when it failed.
             */
            result?: unknown;
        };
        /**
         * @default UTC
         * @example UTC
         * @example Europe/Berlin
         */
        TimeZoneName: string;
        /** @description Body of `POST /v1/apps/{app}/subscriber-tokens`. */
        TokenRequest: {
            /** @description An opaque subject (a user id, say), carried in the token. */
            sub?: string | null;
            /** @description The topics the token lets its holder subscribe to: registered and external. */
            topics: string[];
            /**
             * Format: int64
             * @description Lifetime in seconds, clamped to the server's range (default 1 h).
             */
            ttl_secs?: number | null;
        };
        /** @description A minted subscriber token. */
        TokenResponse: {
            /**
             * Format: int64
             * @description Expiry, ms since the epoch.
             */
            expires_at: number;
            /** @description The compact JWS (HS256) to hand to a browser. */
            token: string;
        };
        /** @description A topic as the API shows it. */
        Topic: {
            /** @description How subscribers authenticate. */
            auth_mode: components["schemas"]["AuthMode"];
            /**
             * Format: int64
             * @description Creation time, ms since the epoch.
             */
            created_at: number;
            /**
             * Format: int64
             * @description Events currently retained in the log.
             */
            event_count: number;
            /** @description Whether browsers may subscribe (with `auth_mode`). */
            external_subscribable: boolean;
            /**
             * Format: int64
             * @description The seq of the latest event (0 before the first).
             */
            last_seq: number;
            /** @description The topic's name. */
            name: string;
            /** @description What is kept. */
            retention: components["schemas"]["Retention"];
            /**
             * Format: int64
             * @description Last change (including the last publish), ms since the epoch.
             */
            updated_at: number;
        };
        /** @description A list of topics. */
        TopicList: {
            /** @description The topics, by name. */
            topics: components["schemas"]["Topic"][];
        };
        TopicName: string;
        TopicPattern: string;
        /** @description One topic's live subscriber count. */
        TopicSubscribers: {
            /** @description Streams listening to it. */
            subscribers: number;
            /** @description The topic. */
            topic: string;
        };
        /** @description A trigger as the API shows it. Never includes its secret. */
        Trigger: {
            /** @description The owning app. */
            app: string;
            /**
             * Format: int64
             * @description While the circuit is open: when one probe delivery is tried, ms since the epoch
             *     (null otherwise), so an admin can tell when deliveries may resume.
             */
            circuit_probe_at?: number | null;
            /** @description The circuit breaker's state. */
            circuit_state: components["schemas"]["CircuitState"];
            /**
             * Format: int64
             * @description Failed deliveries in a row.
             */
            consecutive_failures: number;
            /**
             * Format: int64
             * @description Creation time, ms since the epoch.
             */
            created_at: number;
            /** @description Why the server disabled it, if it did. */
            disabled_reason?: string | null;
            /** @description Whether it fires; disabled triggers get no new deliveries. */
            enabled: boolean;
            /** @description Where it delivers. */
            handler: components["schemas"]["Handler"];
            /** @description `trg_` and 32 hex characters. */
            id: string;
            /**
             * Format: int64
             * @description A `cron` trigger's next tick, ms since the epoch (null for other triggers, and
             *     for a schedule with no tick left).
             */
            next_tick_at?: number | null;
            /** @description Whether deliveries of one topic go out one at a time, in seq order. */
            ordered: boolean;
            /** @description Limits on how hard deliveries hit the endpoint. */
            pacing: components["schemas"]["Pacing"];
            /** @description How failed deliveries are retried. */
            retry: components["schemas"]["RetryPolicy"];
            /** @description What fires it. */
            source: components["schemas"]["TriggerSource"];
            /**
             * Format: int64
             * @description Last change, ms since the epoch.
             */
            updated_at: number;
        };
        /** @description A list of triggers. */
        TriggerList: {
            /** @description The app's triggers, oldest first. */
            triggers: components["schemas"]["Trigger"][];
        };
        /**
         * @description A change to a trigger: every field is optional and only given ones change. Also the
         *     body of `PATCH /v1/apps/{app}/triggers/{trigger_id}`.
         */
        TriggerPatch: {
            /** @description Enable or disable; enabling clears `disabled_reason`. */
            enabled?: boolean | null;
            handler?: null | components["schemas"]["Handler"];
            /** @description Turn in-order delivery on or off. */
            ordered?: boolean | null;
            pacing?: null | components["schemas"]["Pacing"];
            retry?: null | components["schemas"]["RetryPolicyRequest"];
            source?: null | components["schemas"]["TriggerSource"];
        };
        /** @description A trigger's signing secret. */
        TriggerSecret: {
            /** @description `whsec_` and base64 of 32 bytes. */
            secret: string;
        };
        /** @description What fires a trigger. */
        TriggerSource: {
            /** @enum {string} */
            kind: "topic";
            /** @description A topic name, `PREFIX.*` or `*`. */
            topic: components["schemas"]["TopicPattern"];
        } | {
            /** @enum {string} */
            kind: "dead_letter";
        } | {
            /**
             * @description What to do about ticks that went by while no node ran: fire `one` for them
             *     all (the default), or `none`.
             */
            catch_up?: components["schemas"]["CatchUp"];
            /** @enum {string} */
            kind: "cron";
            /** @description A cron pattern: five fields (minute first), or six with seconds first. */
            schedule: components["schemas"]["CronPattern"];
            /** @description The IANA time zone the pattern is read in; `UTC` if absent. */
            timezone?: components["schemas"]["TimeZoneName"];
        };
        /** Format: uri */
        WebhookUrl: string;
    };
    responses: never;
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    healthz: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Status"];
                };
            };
        };
    };
    metrics: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Prometheus text format */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": unknown;
                };
            };
        };
    };
    openapi: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OpenAPI document */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": unknown;
                };
            };
        };
    };
    readyz: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Status"];
                };
            };
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    current_session: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SessionInfo"];
                };
            };
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an API key: this route needs a signed-in dashboard admin; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    sign_in: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SignIn"];
            };
        };
        responses: {
            /** @description signed in; the `picloud_session` cookie is set */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SessionInfo"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description wrong email or password */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description too many attempts from this address, or too many failed sign-ins for this email; see Retry-After */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description too many password checks running; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    sign_out: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description signed out */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid CSRF token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    stats: {
        parameters: {
            query?: {
                /** @description Only this app's series (all zeros for an app with no activity or none at all). */
                app?: string;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["StatsSeries"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description API keys cannot read it */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_apps: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AppList"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the key is not an instance key with instance:admin; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    create_app: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["CreateApp"];
            };
        };
        responses: {
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["App"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the key is not an instance key with instance:admin; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the id is taken */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    get_app: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["App"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the key is neither an instance key with instance:admin nor a key of this app with 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    delete_app: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description deleted */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the key is not an instance key with instance:admin; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_dead_letters: {
        parameters: {
            query?: {
                /** @description Only this trigger's dead letters. */
                trigger?: string;
                /** @description Only ids below this: the last id of the previous page. */
                before?: number;
                /** @description Page size (default 50, at most 500). */
                limit?: number;
            };
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DeadLetterList"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the app does not exist, or the key may not see it */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    purge_dead_letters: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Count"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'deliveries:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the app does not exist, or the key may not see it */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    replay_dead_letters: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["ReplayBody"];
            };
        };
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Count"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'deliveries:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the app does not exist, or the key may not see it */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    get_dead_letter: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description dead letter id */
                dead_letter_id: number;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DeadLetterDetail"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    purge_dead_letter: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description dead letter id */
                dead_letter_id: number;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description purged */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'deliveries:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    replay_dead_letter: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description dead letter id */
                dead_letter_id: number;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Count"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'deliveries:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_deliveries: {
        parameters: {
            query?: {
                /** @description `pending`, `delivered`, `failed` or `dead`. */
                state?: "pending" | "delivered" | "failed" | "dead";
                /** @description Only this trigger's deliveries. */
                trigger?: string;
                /** @description Only ids below this: the last id of the previous page. */
                before?: number;
                /** @description Page size (default 50, at most 500). */
                limit?: number;
            };
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DeliveryList"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the app does not exist, or the key may not see it */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    get_delivery: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description delivery id */
                delivery_id: number;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DeliveryDetail"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    retry_delivery: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description delivery id */
                delivery_id: number;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Delivery"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'deliveries:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    publish_batch: {
        parameters: {
            query?: never;
            header?: {
                /** @description a retry with the same key returns the first answer */
                "Idempotency-Key"?: string | null;
            };
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["BatchBody"];
            };
        };
        responses: {
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BatchAnswer"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'pubsub:publish'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    call_function_get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description script name */
                script: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description what the function answered */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key, or a key of this app without 'functions:invoke' (callers without an API key reach public functions only); or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the function failed (see the run log) */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description every script worker is busy */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    call_function_post: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description script name */
                script: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description what the function answered */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key, or a key of this app without 'functions:invoke' (callers without an API key reach public functions only); or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the function failed (see the run log) */
            500: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description every script worker is busy */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_app_keys: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["KeyList"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the key is neither an instance key with instance:admin nor a key of this app with 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    create_app_key: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["CreateAppKey"];
            };
        };
        responses: {
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CreatedKeyResponse"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the key is neither an instance key with instance:admin nor a key of this app with 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    revoke_app_key: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description key id */
                key_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ApiKey"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the key is neither an instance key with instance:admin nor a key of this app with 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    subscribe: {
        parameters: {
            query: {
                /** @description a topic to subscribe to; repeat for several */
                topic: string[];
                /** @description subscriber token, for clients that cannot set Authorization */
                token?: string;
                /** @description resume cursor, for clients that cannot set Last-Event-ID */
                last_event_id?: string;
            };
            header?: {
                /** @description resume cursor */
                "Last-Event-ID"?: string | null;
            };
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the event stream */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/event-stream": string;
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description a topic does not exist or is not external */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the app's or the token subject's stream limit */
            429: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the server's stream limit */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    rotate_keys: {
        parameters: {
            query?: {
                /**
                 * @description How long tokens signed with the previous key stay valid, in seconds (default:
                 *     the server's grace). 0 ends them at once.
                 */
                grace_secs?: number;
            };
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["RotatedKey"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the app does not exist, or the key may not see it */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    live_subscribers: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["LiveSubscribers"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the app does not exist, or the key may not see it */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_scripts: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ScriptList"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'scripts:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    get_script: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description script name */
                script: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Script"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'scripts:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    save_script: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description script name (topic-name rules) */
                script: string;
            };
            cookie?: never;
        };
        /** @description JSON, or the bare source as text/plain (access unchanged) */
        requestBody: {
            content: {
                "application/json": components["schemas"]["SaveScript"];
                "text/plain": string;
            };
        };
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Script"];
                };
            };
            /** @description does not compile (`line`, `column`) or a bad name */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'scripts:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    delete_script: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description script name */
                script: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description deleted */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'scripts:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_script_runs: {
        parameters: {
            query?: {
                /** @description Only runs below this id: the last id of the previous page. */
                before?: number;
                /** @description Page size (default 50, at most 1000). */
                limit?: number;
            };
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description script name */
                script: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ScriptRunList"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'scripts:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    test_script: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description script name */
                script: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["TestRun"];
            };
        };
        responses: {
            /** @description the run happened (its outcome may be an error) */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TestRunResult"];
                };
            };
            /** @description a bad request, or a source that does not compile (`line`, `column`) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'scripts:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description no such app, or no saved script and no source */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description every script worker is busy */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_script_versions: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description script name */
                script: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ScriptVersionList"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'scripts:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    restore_script_version: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description script name */
                script: string;
                /** @description the version to restore */
                version: number;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Script"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'scripts:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_sources: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SourceList"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    create_source: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["NewSource"];
            };
        };
        responses: {
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Source"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    get_source: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description source id */
                source_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Source"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    delete_source: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description source id */
                source_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description deleted */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    update_source: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description source id */
                source_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SourcePatch"];
            };
        };
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Source"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    create_subscriber_token: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["TokenRequest"];
            };
        };
        responses: {
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TokenResponse"];
                };
            };
            /** @description a topic is unregistered or not external */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'pubsub:token'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the app does not exist, or the key may not see it */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_topics: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TopicList"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    create_topic: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["CreateTopic"];
            };
        };
        responses: {
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Topic"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the app does not exist, or the key may not see it */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description already registered */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    get_topic: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description topic name, percent-encoded */
                topic: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Topic"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    delete_topic: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description topic name, percent-encoded */
                topic: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description deleted */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    read_events: {
        parameters: {
            query?: {
                /** @description Return events with seq greater than this (default 0: from the oldest retained). */
                after?: number;
                /** @description At most this many (default 100, at most 1000). */
                limit?: number;
            };
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description topic name, percent-encoded */
                topic: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EventPage"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    publish: {
        parameters: {
            query?: never;
            header?: {
                /** @description a retry with the same key returns the first answer */
                "Idempotency-Key"?: string | null;
            };
            path: {
                /** @description app id */
                app: string;
                /** @description topic name, percent-encoded */
                topic: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PublishBody"];
            };
        };
        responses: {
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PublishedEvent"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'pubsub:publish'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    set_external: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description topic name, percent-encoded */
                topic: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SetExternal"];
            };
        };
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Topic"];
                };
            };
            /** @description a path or query parameter is malformed; or the body is not a JSON object of the documented shape */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:admin'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_triggers: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TriggerList"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    create_trigger: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["NewTrigger"];
            };
        };
        responses: {
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CreatedTrigger"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'triggers:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    get_trigger: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description trigger id */
                trigger_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Trigger"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'app:read'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    delete_trigger: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description trigger id */
                trigger_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description deleted */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'triggers:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    update_trigger: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description trigger id */
                trigger_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["TriggerPatch"];
            };
        };
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Trigger"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'triggers:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    reveal_trigger_secret: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description trigger id */
                trigger_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TriggerSecret"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'triggers:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    rotate_trigger_secret: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description app id */
                app: string;
                /** @description trigger id */
                trigger_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["RotatedSecret"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description an instance key (they never reach inside an app), or a key of this app without 'triggers:manage'; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    list_instance_keys: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["KeyList"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the key is not an instance key with instance:admin; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    create_instance_key: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["CreateInstanceKey"];
            };
        };
        responses: {
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CreatedKeyResponse"];
                };
            };
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the key is not an instance key with instance:admin; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is larger than the server's limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the body is not sent as Content-Type: application/json */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
    revoke_instance_key: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description key id */
                key_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ApiKey"];
                };
            };
            /** @description a path or query parameter is malformed */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description missing or invalid credentials */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the key is not an instance key with instance:admin; or a dashboard session changing something without X-CSRF-Token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
            /** @description the database is unreachable or its writes are failing; see Retry-After */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorBody"];
                };
            };
        };
    };
}
