#!/usr/bin/env node
// Checks a Dockerfile the way the deploy checks need: every base image is Debian (debian:*,
// or a Debian-based distroless image, *-debian12/13), a later stage may build FROM an earlier
// one; the last stage (the runtime) ends with a non-root USER and installs no build tools
// with apt-get. A simple parser: continuation lines joined, comments dropped, ARG defaults
// substituted in FROM.
//
// A package list COPY'd into the runtime stage and fed to apt-get install (as in
// `sed ... /tmp/list | xargs apt-get install`) is read from the build context and checked too.
//
//   node deploy/checks/dockerfile-check.mjs DOCKERFILE [CONTEXT_DIR (default .)]
import { readFileSync } from "node:fs";
import { join } from "node:path";

const BUILD_TOOLS = /^(build-essential|cmake|ninja-build|make|gcc(-\d+)?|g\+\+(-\d+)?|clang(-\d+)?|ccache|pkg-config|pkgconf|git|protobuf-compiler(-grpc)?|maven|npm|nodejs|golang.*|.*-dev)$/;

const file = process.argv[2];
const context = process.argv[3] ?? ".";
if (!file) {
  console.error("usage: dockerfile-check.mjs DOCKERFILE");
  process.exit(2);
}
const text = readFileSync(file, "utf8").replace(/\\\r?\n/g, " ");
const instructions = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith("#"))
  .map((l) => { const m = /^(\S+)\s*(.*)$/.exec(l); return { op: m[1].toUpperCase(), rest: m[2] }; });

const failures = [];
const args = {};
const stages = [];
for (const ins of instructions) {
  if (ins.op === "ARG" && stages.length === 0) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/.exec(ins.rest);
    if (m) args[m[1]] = (m[2] ?? "").replace(/^["']|["']$/g, "");
  } else if (ins.op === "FROM") {
    const words = ins.rest.split(/\s+/).filter((w) => !w.startsWith("--"));
    const image = words[0].replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_, n) => args[n] ?? "");
    const name = words[1]?.toUpperCase() === "AS" ? words[2] : undefined;
    stages.push({ image, name, instructions: [] });
  } else if (stages.length > 0) {
    stages.at(-1).instructions.push(ins);
  }
}
if (stages.length === 0) failures.push("no FROM instruction");

const isDebian = (image) => /^(docker\.io\/)?(library\/)?debian(:|@|$)/.test(image) || /-debian1[2-9](:|@|$)/.test(image);
const names = new Set();
for (const stage of stages) {
  if (names.has(stage.image)) console.log(`ok   stage ${stage.name ?? "?"} builds on stage ${stage.image}`);
  else if (isDebian(stage.image)) console.log(`ok   stage ${stage.name ?? "?"}: base image ${stage.image} is Debian`);
  else failures.push(`stage ${stage.name ?? "?"}: base image ${stage.image} is not a Debian image`);
  if (stage.name) names.add(stage.name);
}

const runtime = stages.at(-1);
if (runtime) {
  const users = runtime.instructions.filter((i) => i.op === "USER");
  const user = users.at(-1)?.rest.trim();
  if (!user) failures.push("the runtime stage has no USER: it would run as root");
  else if (/^(root|0)(:.*)?$/.test(user)) failures.push(`the runtime stage's last USER is ${user}, which is root`);
  else console.log(`ok   the runtime stage runs as USER ${user}`);
  const last = runtime.instructions.at(-1);
  if (users.length > 0 && runtime.instructions.slice(runtime.instructions.indexOf(users.at(-1)) + 1).some((i) => i.op === "RUN"))
    failures.push("a RUN follows the runtime stage's last USER: the USER must come after the last RUN");
  for (const run of runtime.instructions.filter((i) => i.op === "RUN")) {
    for (const m of run.rest.matchAll(/apt-get\s+(?:-\S+\s+)*install\s+([^;&|]*)/g)) {
      const packages = m[1].split(/\s+/).filter((w) => w && !w.startsWith("-") && !w.startsWith("$"));
      const tools = packages.filter((p) => BUILD_TOOLS.test(p.replace(/[=:].*$/, "")));
      if (tools.length > 0) failures.push(`the runtime stage installs build tools: ${tools.join(" ")} (RUN ${run.rest.slice(0, 80)}...)`);
    }
    if (!/apt-get\s+(?:-\S+\s+)*install/.test(run.rest)) continue;
    for (const copy of runtime.instructions.filter((i) => i.op === "COPY" && !/--from/.test(i.rest))) {
      const [src, dest] = copy.rest.split(/\s+/).filter((w) => !w.startsWith("--"));
      if (!dest || !run.rest.includes(dest)) continue;
      const listed = readFileSync(join(context, src), "utf8").split(/\n/).map((l) => l.replace(/#.*/, "").trim()).filter(Boolean);
      const tools = listed.filter((p) => BUILD_TOOLS.test(p));
      if (tools.length > 0) failures.push(`the runtime stage installs build tools listed in ${src}: ${tools.join(" ")}`);
      else console.log(`ok   the runtime stage's apt-get install list ${src} (${listed.length} packages) has no build tools`);
    }
  }
  if (last) console.log(`ok   the runtime stage ends with ${last.op}`);
}
for (const f of failures) console.log(`FAIL ${file}: ${f}`);
console.log(`dockerfile-check: ${stages.length} stages, ${failures.length} failures`);
process.exit(failures.length === 0 ? 0 : 1);
