-- The streamer reads users only to backfill, and only the event's source
-- columns: column-level SELECT instead of the whole table, so is_a_dog,
-- api_version and whatever is added later are out of its reach.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'userstream_streamer') THEN
        REVOKE SELECT ON users FROM userstream_streamer;
        GRANT SELECT (id, username, country_code, created_at) ON users TO userstream_streamer;
    END IF;
END
$$;
