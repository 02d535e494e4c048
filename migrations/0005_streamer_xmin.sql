-- The initial snapshot reads the rows committed before the slot's
-- consistent point, which it tells by each row's xmin: a column grant on
-- the system column, still nothing of is_a_dog or api_version.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'userstream_streamer') THEN
        GRANT SELECT (xmin) ON users TO userstream_streamer;
    END IF;
END
$$;
