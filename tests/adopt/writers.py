#!/usr/bin/env python3
"""Concurrent writers of an application's outbox table (issue 17's tests).

Each of --connections threads runs transactions like a DDD service does:
lock the stream's domain row (update domain_order ... where orderNo = ...),
insert 1-5 event_record rows with published = 'N', then commit, or roll back
(--rollback percent of them). --hold percent are held open 2-5 s before
they end. Runs for --seconds, then finishes the open transactions.

Every finished transaction is one line of --out, written after it ended:
  {"commit": true|false, "rows": [[event_id, orderNo, topic, message,
                                   created_date], ...]}
so the test knows the committed rows (and every value written) and the ids
of rolled-back rows. A transaction that failed (lock wait, lost connection)
is reported as rolled back.
"""
import argparse
import datetime
import json
import random
import threading
import time

import pymysql


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--user", default="app")
    p.add_argument("--password", default="secret")
    p.add_argument("--db", default="shop")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rollback", type=float, default=20)
    p.add_argument("--hold", type=float, default=5)
    p.add_argument("--pause-ms", type=float, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    out = open(a.out, "w")
    out_lock = threading.Lock()
    streams = ["order-%d" % i for i in range(a.streams)]
    setup = pymysql.connect(host=a.host, port=a.port, user=a.user,
                            password=a.password, database=a.db,
                            autocommit=True)
    with setup.cursor() as c:
        for s in streams:
            c.execute("insert ignore into domain_order values (%s, 0)", (s,))
    setup.close()
    deadline = time.monotonic() + a.seconds

    def writer(k):
        rng = random.Random(a.seed * 1000 + k)
        conn = pymysql.connect(host=a.host, port=a.port, user=a.user,
                               password=a.password, database=a.db,
                               autocommit=False)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            stream = rng.choice(streams)
            rows = []
            commit = rng.random() * 100 >= a.rollback
            try:
                with conn.cursor() as c:
                    c.execute("update domain_order set n = n + 1 "
                              "where orderNo = %s", (stream,))
                    for i in range(rng.randint(1, 5)):
                        topic = rng.choice(["order.placed", "order.paid",
                                            "order.shipped"])
                        message = json.dumps({"w": k, "tx": n, "i": i})
                        created = datetime.datetime.now(
                            datetime.timezone.utc).strftime(
                                "%Y-%m-%d %H:%M:%S")
                        c.execute(
                            "insert into event_record (orderNo, topic, "
                            "message, published, created_date) values "
                            "(%s, %s, %s, 'N', %s)",
                            (stream, topic, message, created))
                        rows.append([c.lastrowid, stream, topic, message,
                                     created])
                if rng.random() * 100 < a.hold:
                    time.sleep(rng.uniform(2, 5))
                if commit:
                    conn.commit()
                else:
                    conn.rollback()
            except pymysql.MySQLError:
                commit = False
                try:
                    conn.rollback()
                except pymysql.MySQLError:
                    conn = pymysql.connect(host=a.host, port=a.port,
                                           user=a.user, password=a.password,
                                           database=a.db, autocommit=False)
            with out_lock:
                out.write(json.dumps({"commit": commit, "rows": rows}) + "\n")
                out.flush()
            time.sleep(a.pause_ms / 1000.0)
        conn.close()

    threads = [threading.Thread(target=writer, args=(k,))
               for k in range(a.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()


if __name__ == "__main__":
    main()
