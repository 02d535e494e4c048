# The consumer of "Intro to data engineering, part 3" (the article this
# project grew from), pointed at users.created: the same Consumer, subscribe
# and poll loop. What differs, each for the test that runs it
# (clients_test.go): the broker, topic and group come from the command line;
# it reads the topic from its start; it prints each message's key, value and
# headers as one JSON line (errors go to stderr); it stops after N messages.
import json
import sys

from confluent_kafka import Consumer

bootstrap, topic, group, want = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

c = Consumer({'bootstrap.servers': bootstrap, 'group.id': group, 'auto.offset.reset': 'earliest'})
c.subscribe([topic])
seen = 0
while seen < want:
    msg = c.poll(1.0)
    if msg is None:
        continue
    if msg.error():
        print(msg.error(), file=sys.stderr)
        continue
    print(json.dumps({
        'key': msg.key().decode('utf-8'),
        'value': msg.value().decode('utf-8'),
        'headers': {k: v.decode('utf-8') for k, v in (msg.headers() or [])},
    }), flush=True)
    seen += 1
c.close()
