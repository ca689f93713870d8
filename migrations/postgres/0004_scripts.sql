-- Scripts (issue #14): app code that runs inside PiCloud. A script is a name with a
-- current version; every save adds a version (kept, listable, restorable).
CREATE TABLE scripts (
    app_id      TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    access      TEXT NOT NULL DEFAULT 'key' CHECK (access IN ('key', 'public')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (app_id, name)
);

CREATE TABLE script_versions (
    app_id      TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    source      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (app_id, name, version),
    FOREIGN KEY (app_id, name) REFERENCES scripts(app_id, name) ON DELETE CASCADE
);
