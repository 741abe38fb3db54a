// serverless-offline-sns without the serverless framework: its SNSServer on
// an express app (CreateTopic, Subscribe with HTTP endpoints, Publish), plus
// the test's HTTP receiver, which appends each delivery's body as one JSON
// line to LOG. Writes "SNS_PORT RECEIVER_PORT" to READY once both listen.
// Usage: NODE_PATH=DEPS/node_modules node sns_offline.mjs READY LOG
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const express = require("express");
const { SNSServer } = await import(
  process.env.NODE_PATH + "/serverless-offline-sns/dist/sns-server.js");

const [ready, log] = process.argv.slice(2);
const receiver = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    fs.appendFileSync(log, JSON.stringify(JSON.parse(body)) + "\n");
    res.end("ok");
  });
});
receiver.listen(0, "127.0.0.1", () => {
  const app = express();
  new SNSServer(() => {}, app, "us-east-1", "123456789012");
  const sns = app.listen(0, "127.0.0.1", () => {
    fs.writeFileSync(ready + ".tmp",
      `${sns.address().port} ${receiver.address().port}`);
    fs.renameSync(ready + ".tmp", ready);
  });
});
