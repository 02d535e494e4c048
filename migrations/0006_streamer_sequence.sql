-- backfill --missing compares the id sequence with the largest id in Kafka:
-- a sequence behind it means a restore handed out, or is about to hand out,
-- ids the topic holds for other users. Reading the sequence's position
-- needs SELECT on it (nextval and setval stay the API's and the owner's).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'userstream_streamer') THEN
        GRANT SELECT ON SEQUENCE users_id_seq TO userstream_streamer;
    END IF;
END
$$;
