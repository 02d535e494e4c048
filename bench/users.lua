-- wrk script for make bench: POST /users with a distinct valid user per
-- request; the first script argument makes usernames unique per run.
local counter, prefix, thread_seq = 0, "wrk", 0

function setup(thread)
  thread_seq = thread_seq + 1
  thread:set("tid", thread_seq)
end

function init(args)
  prefix = args[1] or prefix
end

function request()
  counter = counter + 1
  local body = string.format('{"username":"%s-%d-%d","country_code":"BE","created_at":"2021-01-01 00:00:00"}', prefix, tid, counter)
  return wrk.format("POST", "/users", {["Content-Type"] = "application/json"}, body)
end
