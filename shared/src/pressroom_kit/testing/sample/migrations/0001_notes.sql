CREATE TABLE notes (
    id          text        PRIMARY KEY,
    brand_id    uuid        NOT NULL,
    title       text        NOT NULL,
    edits       integer     NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL
);
SELECT pressroom_enable_tenant_rls('notes');

CREATE TABLE note_mentions (
    consumer_note text NOT NULL,
    event_id      uuid NOT NULL,
    brand_id      uuid NOT NULL,
    PRIMARY KEY (consumer_note, event_id)
);
SELECT pressroom_enable_tenant_rls('note_mentions');
