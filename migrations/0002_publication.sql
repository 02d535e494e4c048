-- The streamer's publication: inserts only, and only the columns the
-- user.created event is built from (PostgreSQL 15+ column lists), so
-- is_a_dog, api_version and any column added later never leave PostgreSQL.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'users_pub') THEN
        CREATE PUBLICATION users_pub
            FOR TABLE users (id, username, country_code, created_at)
            WITH (publish = 'insert');
    END IF;
END
$$;
