-- Notifications are hints. Any role that can connect may LISTEN and NOTIFY on any channel, so
-- a note names only what changed ("<kind>|<id>|<key>") and the waiter reads the database: a
-- note can wake a waiter but never supplies a value, and no message is readable by a role
-- that cannot read Perdure's tables. A note too long for NOTIFY (a very long workflow ID,
-- topic or key) wakes every waiter ("*") instead of failing the write that sent it.
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
BEGIN
    PERFORM perdure.hint('recv|' || NEW.destination_id || '|' || NEW.handed_to);
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
