-- Notifications are hints. Any role that can connect may LISTEN and NOTIFY on any channel, so
-- a note names what changed ("<kind>|<id>|<key>") and the waiter reads the database; a note
-- too long for NOTIFY (a very long workflow ID, topic or key) wakes every waiter ("*") instead
-- of failing the write that sent it. The one note that carries a value, a hand-off's message,
-- is signed with HMAC-SHA256 under a key of this database that only roles able to read
-- Perdure's tables can read, and names the owner token of the receiving execution:
-- "recv|<workflow>|<position>|<token>|<base64 format>|<base64 message>|<hex MAC>".
ALTER TABLE perdure.notifications ADD COLUMN handed_token BIGINT;

-- The key, and its HMAC pads (the key zero-padded to SHA-256's 64-byte block, XOR 0x36 and
-- 0x5c): SQL computes the MAC as sha256(outer_pad || sha256(inner_pad || note)). The key is
-- 32 bytes from gen_random_uuid(), PostgreSQL's strong random source (244 random bits).
CREATE TABLE perdure.notification_key (
    key BYTEA NOT NULL,
    inner_pad BYTEA NOT NULL,
    outer_pad BYTEA NOT NULL
);
DO $$
DECLARE
    k BYTEA := decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');
    block BYTEA;
    inner_pad BYTEA;
    outer_pad BYTEA;
BEGIN
    block := k || decode(repeat('00', 64 - length(k)), 'hex');
    inner_pad := block;
    outer_pad := block;
    FOR i IN 0..63 LOOP
        inner_pad := set_byte(inner_pad, i, get_byte(block, i) # 54);
        outer_pad := set_byte(outer_pad, i, get_byte(block, i) # 92);
    END LOOP;
    INSERT INTO perdure.notification_key VALUES (k, inner_pad, outer_pad);
END $$;

CREATE FUNCTION perdure.hint(note TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF octet_length(note) <= 7900 THEN
        PERFORM pg_notify('perdure', note);
    ELSE
        PERFORM pg_notify('perdure', '*');
    END IF;
END $$;

CREATE OR REPLACE FUNCTION perdure.notify_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM perdure.hint('msg|' || NEW.destination_id || '|' || NEW.topic);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION perdure.notify_handed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- No token (a process from before this version handed it): no receiver trusts the value.
    note TEXT := 'recv|' || NEW.destination_id || '|' || NEW.handed_to || '|'
        || COALESCE(NEW.handed_token, 0) || '|';
    pads RECORD;
BEGIN
    IF octet_length(NEW.message) <= 3072 THEN
        note := note || encode(convert_to(NEW.serialization, 'UTF8'), 'base64') || '|'
            || translate(encode(NEW.message, 'base64'), E'\n', '');
    ELSE
        note := note || '|';  -- too long to carry: the receiver reads its step
    END IF;
    SELECT inner_pad, outer_pad INTO pads FROM perdure.notification_key;
    note := note || '|' || encode(sha256(pads.outer_pad
        || sha256(pads.inner_pad || convert_to(note, 'UTF8'))), 'hex');
    PERFORM perdure.hint(note);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION perdure.notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM perdure.hint('event|' || NEW.workflow_id || '|' || NEW.key);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION perdure.notify_stream() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM perdure.hint('stream|' || NEW.workflow_id || '|' || NEW.key);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION perdure.notify_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM perdure.result_waiters WHERE workflow_id = NEW.workflow_id) THEN
        PERFORM perdure.hint('end|' || NEW.workflow_id || '|');
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION perdure.notify_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM perdure.hint('queue|' || NEW.queue_name || '|');
    RETURN NULL;
END $$;
