-- Least-privilege group roles. They are NOLOGIN: an operator gives login and
-- a password to them (or to members of them) outside migrations, so no secret
-- is ever written here. Roles are cluster-wide, so two databases migrating at
-- once may race to create them: a duplicate is fine.
--   userstream_api:      INSERT and SELECT on users and its sequence, nothing else.
--   userstream_streamer: REPLICATION (attribute of the role itself, it is not
--                        inherited) and SELECT on users, for backfills.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'userstream_api') THEN
        BEGIN
            CREATE ROLE userstream_api NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'userstream: cannot create role userstream_api; create it as a superuser';
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'userstream_streamer') THEN
        BEGIN
            CREATE ROLE userstream_streamer NOLOGIN REPLICATION;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'userstream: cannot create role userstream_streamer; create it WITH REPLICATION as a superuser';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'userstream_api') THEN
        GRANT SELECT, INSERT ON users TO userstream_api;
        GRANT USAGE ON SEQUENCE users_id_seq TO userstream_api;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'userstream_streamer') THEN
        GRANT SELECT ON users TO userstream_streamer;
    END IF;
END
$$;
