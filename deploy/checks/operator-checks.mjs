#!/usr/bin/env node
// What an operator checks before deploying a rendered scenario of stip-compliance (the
// output of `helm template` or `kubectl kustomize`): gRPC probes on the port named health,
// a hardened security context, selectors that match, PDBs and HPAs that target existing
// workloads, HPAs that cannot scale a consumer past the topics' partition count, a grace
// period longer than --shutdown-timeout, and NetworkPolicies that admit exactly the paths
// the services use (the table EXPECTED_PATHS below). With --chart, the values (the chart's
// values.yaml merged with --values) are validated against values.schema.json first.
//
//   node deploy/checks/operator-checks.mjs --manifests FILE [--chart DIR] [--values FILE]...
//        [--partitions N] [--name SCENARIO] [--network-policies required|optional]
//
// NetworkPolicies are required unless the values turn them off (networkPolicy.enabled false)
// or --network-policies optional says so (a development overlay); when present, they are
// always checked. --paths-values FILE: values that decide the expected paths when there is no
// --chart (the chart's defaults, for plain manifests that mirror them).
//
// Exit status: 0 when every check passes, 1 otherwise (each failure names the object and the
// rule), 2 on a usage error.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, readYaml, readYamlStream, requireTool } from "./lib.mjs";

const COMPONENT_LABEL = "app.kubernetes.io/component";
const COMPONENTS = ["intake", "assessment", "registry"];
// Every service consumes Kafka: intake stip.filings.inbound.v1, assessment and registry
// stip.filings.v1 (and registry stip.decisions.v1). A consumer group uses at most one
// instance per partition; the others idle.
// With the chart's values, intake consumes only when intake.inbound is on.
let CONSUMERS = ["intake", "assessment", "registry"];
const DEFAULT_SHUTDOWN_TIMEOUT_S = 20; // services/common/config.h
const DEFAULT_GRACE_S = 30; // Kubernetes' default terminationGracePeriodSeconds
const DEFAULT_POSTGRES_PORT = 5432;
const DEFAULT_KAFKA_PORT = 9092;

// The network paths the services use, and no others. Ports are container port names of the
// component (grpc, metrics), "grpc@registry" (the registry's grpc port), {kafka}/{postgres}
// or numbers; peers: "component:X" (pods of that component), "outside" (anything that is
// not a pod of this release: any address, a namespace, an IP block, other pods). Kubelet
// probes need no rule: traffic from the node to its pods is always allowed, so the health
// port is opened only to the release's helm test pod ("helm-test": component=test). With the chart's values, the APIs of assessment
// and registry are open to clients only when networkPolicy.assessment.clients /
// networkPolicy.registry.regulatorClients name some.
function expectedPaths(values) {
  const listed = (key) => (values === undefined ? true : (get(values, key) ?? []).length > 0);
  const paths = [
    // Clients (portals, stipctl) call intake; Prometheus scrapes every component.
    { component: "intake", direction: "ingress", port: "grpc", protocol: "TCP", peers: ["outside"] },
    ...COMPONENTS.map((c) => ({ component: c, direction: "ingress", port: "metrics", protocol: "TCP", peers: ["outside"] })),
    // intake asks the registry whether an enterprise is enrolled.
    { component: "registry", direction: "ingress", port: "grpc", protocol: "TCP", peers: ["component:intake"] },
    // Everyone resolves names and talks to Kafka; the registry to PostgreSQL.
    ...COMPONENTS.flatMap((c) => [
      { component: c, direction: "egress", port: 53, protocol: "UDP", peers: ["outside"] },
      { component: c, direction: "egress", port: 53, protocol: "TCP", peers: ["outside"] },
      { component: c, direction: "egress", port: "{kafka}", protocol: "TCP", peers: ["outside"] },
    ]),
    { component: "registry", direction: "egress", port: "{postgres}", protocol: "TCP", peers: ["outside"] },
    { component: "intake", direction: "egress", port: "grpc@registry", protocol: "TCP", peers: ["component:registry"] },
    // `helm test` runs stipctl health against every component's health port.
    ...COMPONENTS.map((c) => ({ component: c, direction: "ingress", port: "health", protocol: "TCP", peers: ["helm-test"] })),
  ];
  if (listed("networkPolicy.assessment.clients"))
    paths.push({ component: "assessment", direction: "ingress", port: "grpc", protocol: "TCP", peers: ["outside"] });
  if (listed("networkPolicy.registry.regulatorClients"))
    paths.push({ component: "registry", direction: "ingress", port: "grpc", protocol: "TCP", peers: ["outside"] });
  return paths;
}

function parseArgs(argv) {
  const args = { values: [] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[++i];
    if (value === undefined) usage(`${flag} needs a value`);
    if (flag === "--manifests") args.manifests = value;
    else if (flag === "--chart") args.chart = value;
    else if (flag === "--values") args.values.push(value);
    else if (flag === "--partitions") args.partitions = Number(value);
    else if (flag === "--name") args.name = value;
    else if (flag === "--network-policies") args.networkPolicies = value;
    else if (flag === "--paths-values") args.pathsValues = value;
    else usage(`unknown flag ${flag}`);
  }
  if (!args.manifests) usage("--manifests is required");
  if (!["required", "optional"].includes(args.networkPolicies ?? "required")) usage("--network-policies is required or optional");
  return args;
}

function usage(message) {
  console.error(`operator-checks: ${message}\nusage: operator-checks.mjs --manifests FILE [--chart DIR] [--values FILE]... [--partitions N] [--name SCENARIO] [--network-policies required|optional]`);
  process.exit(2);
}

const failures = [];
let passes = 0;
function check(ok, subject, rule) {
  if (ok) passes++;
  else failures.push(`${subject}: ${rule}`);
  return ok;
}

// Helm's merge of values: maps merge key by key, anything else replaces, null deletes.
function mergeValues(base, override) {
  if (!isMap(base) || !isMap(override)) return override;
  const merged = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === null) delete merged[key];
    else merged[key] = key in base ? mergeValues(base[key], value) : value;
  }
  return merged;
}
const isMap = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const get = (object, path) => path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), object);

function validateValues(chart, values, subject) {
  const schemaPath = join(chart, "values.schema.json");
  let schema;
  try {
    schema = JSON.parse(readFileSync(schemaPath, "utf8"));
  } catch (error) {
    check(false, subject, `values.schema.json: ${error.message}`);
    return;
  }
  const draft = String(schema.$schema ?? "");
  const Ajv = draft.includes("2020-12") ? requireTool("ajv/dist/2020").default
    : draft.includes("2019-09") ? requireTool("ajv/dist/2019").default
    : requireTool("ajv").default;
  const ajv = new Ajv({ allErrors: true, strict: false });
  requireTool("ajv-formats").default(ajv);
  const validate = ajv.compile(schema);
  if (check(validate(values), subject, "the values validate against values.schema.json")) return;
  for (const e of validate.errors) failures.push(`${subject}: values${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
}

// ---------------------------------------------------------------- label selectors
function selects(selector, labels) {
  if (!selector) return false;
  labels = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = e.key in labels;
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}
const isEmptySelector = (s) => !s || (Object.keys(s.matchLabels ?? {}).length === 0 && (s.matchExpressions ?? []).length === 0);

// ---------------------------------------------------------------- durations and settings
function parseDurationSeconds(text) {
  if (text === undefined || text === null) return undefined;
  const s = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const units = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, ns: 1e-9 };
  let total = 0;
  let rest = s;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)/.exec(rest);
    if (!m) return NaN;
    total += Number(m[1]) * units[m[2]];
    rest = rest.slice(m[0].length);
  }
  return total;
}

// setting: the value a service reads for --flag, from its args or its STIP_* environment
// (also through a ConfigMap in the stream). Args win, as in services/common/config.cc.
function setting(container, flag, configMaps) {
  const args = [...(container.command ?? []), ...(container.args ?? [])];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (String(args[i]).startsWith(`${flag}=`)) return String(args[i]).slice(flag.length + 1);
  }
  const envName = `STIP_${flag.replace(/^-+/, "").replace(/-/g, "_").toUpperCase()}`;
  for (const env of container.env ?? []) {
    if (env.name !== envName) continue;
    if (env.value !== undefined) return env.value;
    const ref = env.valueFrom?.configMapKeyRef;
    if (ref) return configMaps.get(ref.name)?.[ref.key];
    return { unknown: `${envName} from ${Object.keys(env.valueFrom ?? {}).join(",")}` };
  }
  for (const from of container.envFrom ?? []) {
    const data = from.configMapRef ? configMaps.get(from.configMapRef.name) : undefined;
    const key = envName.slice((from.prefix ?? "").length);
    if (data && (from.prefix ?? "") === envName.slice(0, (from.prefix ?? "").length) && key in data) return data[key];
  }
  return undefined;
}

function portOfUrl(url, scheme, fallback) {
  if (typeof url !== "string") return [fallback];
  const m = new RegExp(`^${scheme}://(?:[^@/]*@)?([^/?]+)`).exec(url);
  if (!m) return [fallback];
  return [...new Set(m[1].split(",").map((hp) => {
    const p = /:(\d+)$/.exec(hp);
    return p ? Number(p[1]) : fallback;
  }))];
}

// ---------------------------------------------------------------- the checks
function podTemplate(object) {
  switch (object.kind) {
    case "Deployment": case "StatefulSet": case "DaemonSet": case "ReplicaSet": case "Job":
      return object.spec?.template;
    case "CronJob":
      return object.spec?.jobTemplate?.spec?.template;
    case "Pod":
      return { metadata: object.metadata, spec: object.spec };
    default:
      return undefined;
  }
}

function checkSecurity(subject, pod) {
  const podSc = pod.spec.securityContext ?? {};
  check(pod.spec.hostNetwork !== true, subject, "hostNetwork must not be true");
  check(pod.spec.hostPID !== true, subject, "hostPID must not be true");
  check(pod.spec.hostIPC !== true, subject, "hostIPC must not be true");
  for (const c of [...(pod.spec.initContainers ?? []), ...(pod.spec.containers ?? [])]) {
    const where = `${subject} container ${c.name}`;
    const sc = c.securityContext ?? {};
    const runAsNonRoot = sc.runAsNonRoot ?? podSc.runAsNonRoot;
    const runAsUser = sc.runAsUser ?? podSc.runAsUser;
    const seccomp = sc.seccompProfile?.type ?? podSc.seccompProfile?.type;
    check(runAsNonRoot === true, where, `securityContext.runAsNonRoot must be true (is ${runAsNonRoot})`);
    check(runAsUser !== undefined && runAsUser !== 0, where, `securityContext.runAsUser must be set and not 0 (is ${runAsUser})`);
    check(sc.readOnlyRootFilesystem === true, where, `securityContext.readOnlyRootFilesystem must be true (is ${sc.readOnlyRootFilesystem})`);
    check(sc.allowPrivilegeEscalation === false, where, `securityContext.allowPrivilegeEscalation must be false (is ${sc.allowPrivilegeEscalation})`);
    check((sc.capabilities?.drop ?? []).includes("ALL"), where, `securityContext.capabilities.drop must contain ALL (is ${JSON.stringify(sc.capabilities?.drop ?? [])})`);
    check((sc.capabilities?.add ?? []).length === 0, where, `securityContext.capabilities.add must be empty (is ${JSON.stringify(sc.capabilities?.add)})`);
    check(seccomp === "RuntimeDefault", where, `seccompProfile.type must be RuntimeDefault (is ${seccomp})`);
    check(sc.privileged !== true, where, "securityContext.privileged must not be true");
  }
}

function checkProbes(subject, pod) {
  for (const c of pod.spec.containers ?? []) {
    const where = `${subject} container ${c.name}`;
    const ports = Object.fromEntries((c.ports ?? []).map((p) => [p.name, p.containerPort]));
    for (const name of ["grpc", "health", "metrics"]) {
      check(ports[name] !== undefined, where, `has a container port named ${name}`);
    }
    const expected = { readinessProbe: "", livenessProbe: "stip.liveness", startupProbe: undefined };
    for (const [probeName, service] of Object.entries(expected)) {
      const probe = c[probeName];
      if (probeName === "startupProbe" && !probe) continue;
      if (!check(probe !== undefined, where, `${probeName} is required`)) continue;
      if (!check(probe.grpc !== undefined, where, `${probeName} must be a grpc probe (is ${Object.keys(probe).filter((k) => ["grpc", "httpGet", "tcpSocket", "exec"].includes(k)).join(",") || "none"})`)) continue;
      check(ports.health !== undefined && probe.grpc.port === ports.health, where,
        `${probeName}.grpc.port ${probe.grpc.port} must be the port named health (${ports.health})`);
      const actual = probe.grpc.service ?? "";
      const want = service ?? (actual === "stip.liveness" ? "stip.liveness" : "");
      check(actual === want, where, `${probeName}.grpc.service must be ${JSON.stringify(want)} (is ${JSON.stringify(actual)})`);
    }
  }
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const scenario = args.name ?? args.manifests;
  const objects = readYamlStream(args.manifests);
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const configMaps = new Map(byKind("ConfigMap").map((o) => [o.metadata.name, o.data ?? {}]));

  // The values and the partition count.
  let values;
  if (args.chart) {
    values = readYaml(join(args.chart, "values.yaml"));
    for (const file of args.values) values = mergeValues(values, readYaml(file));
    validateValues(args.chart, values, `values of ${scenario}`);
  }
  if (values !== undefined && get(values, "intake.inbound") === false) CONSUMERS = ["assessment", "registry"];
  let partitions = get(values, "kafka.topics.partitions");
  let partitionsFrom = "kafka.topics.partitions";
  if (partitions === undefined && byKind("KafkaTopic").length > 0) {
    partitions = Math.min(...byKind("KafkaTopic").map((t) => t.spec?.partitions ?? Infinity));
    partitionsFrom = "the rendered KafkaTopics (smallest)";
  }
  if (partitions === undefined && args.partitions !== undefined) {
    partitions = args.partitions;
    partitionsFrom = "--partitions";
  }

  // Workloads, by component.
  const workloads = objects.filter((o) => ["Deployment", "StatefulSet"].includes(o.kind));
  const components = new Map();
  for (const w of workloads) {
    const c = w.spec?.template?.metadata?.labels?.[COMPONENT_LABEL];
    if (COMPONENTS.includes(c)) {
      check(!components.has(c), describe(w), `is the only workload of component ${c}`);
      components.set(c, w);
    }
  }
  for (const c of COMPONENTS) check(components.has(c), scenario, `has a Deployment or StatefulSet labelled ${COMPONENT_LABEL}: ${c}`);

  for (const o of objects) {
    const pod = podTemplate(o);
    if (!pod?.spec) continue;
    const subject = describe(o);
    checkSecurity(subject, pod);
    if (o.kind === "Deployment" || o.kind === "StatefulSet") {
      checkProbes(subject, pod);
      check(!isEmptySelector(o.spec.selector) && selects(o.spec.selector, pod.metadata?.labels), subject,
        `spec.selector ${JSON.stringify(o.spec.selector)} must match the pod template's labels ${JSON.stringify(pod.metadata?.labels ?? {})}`);
      const others = workloads.filter((w) => w !== o && selects(o.spec.selector, w.spec?.template?.metadata?.labels));
      check(others.length === 0, subject, `spec.selector also selects the pods of ${others.map(describe).join(", ")}`);
      const grace = pod.spec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_S;
      for (const c of pod.spec.containers ?? []) {
        const raw = setting(c, "--shutdown-timeout", configMaps);
        if (typeof raw === "object" && raw !== null) {
          check(false, `${subject} container ${c.name}`, `--shutdown-timeout comes from ${raw.unknown}, which the check cannot read: set it in args or a literal env value`);
          continue;
        }
        const timeout = raw === undefined ? DEFAULT_SHUTDOWN_TIMEOUT_S : parseDurationSeconds(raw);
        // A preStop sleep runs before SIGTERM and counts against the same grace period.
        const preStop = c.lifecycle?.preStop?.sleep?.seconds ?? 0;
        check(Number.isFinite(timeout) && grace > timeout + preStop, `${subject} container ${c.name}`,
          `terminationGracePeriodSeconds ${grace} must exceed --shutdown-timeout ${raw ?? `${DEFAULT_SHUTDOWN_TIMEOUT_S}s (default)`}` +
          (preStop ? ` plus the preStop sleep ${preStop}s` : ""));
      }
      const component = pod.metadata?.labels?.[COMPONENT_LABEL];
      if (CONSUMERS.includes(component) && partitions !== undefined && o.spec.replicas !== undefined) {
        check(o.spec.replicas <= partitions, subject, `replicas ${o.spec.replicas} must not exceed the partition count ${partitions} (${partitionsFrom})`);
      }
    }
  }

  // Services select exactly one workload's pods; their target ports exist.
  for (const s of byKind("Service")) {
    const subject = describe(s);
    const selector = s.spec?.selector;
    if (!check(selector && Object.keys(selector).length > 0, subject, "has a selector")) continue;
    const selected = workloads.filter((w) => selects({ matchLabels: selector }, w.spec?.template?.metadata?.labels));
    if (!check(selected.length === 1, subject, `selector ${JSON.stringify(selector)} must select exactly one workload's pods (selects ${selected.map(describe).join(", ") || "none"})`)) continue;
    const containerPorts = (selected[0].spec.template.spec.containers ?? []).flatMap((c) => c.ports ?? []);
    for (const p of s.spec.ports ?? []) {
      const target = p.targetPort ?? p.port;
      check(containerPorts.some((cp) => cp.name === target || cp.containerPort === target), subject,
        `port ${p.name ?? p.port}: targetPort ${target} is not a container port of ${describe(selected[0])}`);
    }
  }

  // PDBs and HPAs target existing workloads; HPAs stay within the partition count.
  for (const pdb of byKind("PodDisruptionBudget")) {
    const selected = workloads.filter((w) => selects(pdb.spec?.selector, w.spec?.template?.metadata?.labels));
    check(selected.length === 1, describe(pdb), `selector must select exactly one workload's pods (selects ${selected.map(describe).join(", ") || "none"})`);
  }
  for (const hpa of byKind("HorizontalPodAutoscaler")) {
    const ref = hpa.spec?.scaleTargetRef ?? {};
    const target = workloads.find((w) => w.kind === ref.kind && w.metadata.name === ref.name && (!ref.apiVersion || ref.apiVersion === w.apiVersion));
    const subject = describe(hpa);
    if (!check(target !== undefined, subject, `scaleTargetRef ${JSON.stringify(ref)} must name a workload in the stream`)) continue;
    check((hpa.spec.minReplicas ?? 1) <= hpa.spec.maxReplicas, subject, "minReplicas <= maxReplicas");
    const component = target.spec.template.metadata?.labels?.[COMPONENT_LABEL];
    if (CONSUMERS.includes(component)) {
      if (check(partitions !== undefined, subject, `the partition count must be known (kafka.topics.partitions, a KafkaTopic or --partitions) to bound the HPA of ${component}`)) {
        check(hpa.spec.maxReplicas <= partitions, subject,
          `maxReplicas ${hpa.spec.maxReplicas} must not exceed the partition count ${partitions} (${partitionsFrom}): ${component} consumes Kafka`);
      }
    }
  }

  // The ServiceMonitors select a Service with a port named metrics.
  for (const sm of byKind("ServiceMonitor")) {
    const services = byKind("Service").filter((s) => selects(sm.spec?.selector, s.metadata?.labels));
    check(services.length > 0, describe(sm), "selects at least one Service");
    for (const e of sm.spec?.endpoints ?? []) {
      check(services.some((s) => (s.spec.ports ?? []).some((p) => p.name === e.port)), describe(sm), `endpoint port ${e.port} is a port of a selected Service`);
    }
  }

  if (objects.some((o) => o.kind === "NetworkPolicy") || (args.networkPolicies ?? "required") === "required" && get(values, "networkPolicy.enabled") !== false) {
    checkNetworkPolicies(scenario, objects, components, configMaps,
      expectedPaths(values ?? (args.pathsValues ? readYaml(args.pathsValues) : undefined)));
  } else {
    console.log(`note: ${scenario} renders no NetworkPolicy (${values ? "networkPolicy.enabled is false" : "--network-policies optional"}): every path is open`);
  }

  for (const f of failures) console.log(`FAIL ${f}`);
  console.log(`operator-checks ${scenario}: ${passes} checks passed, ${failures.length} failed` +
    (partitions !== undefined ? ` (partitions ${partitions} from ${partitionsFrom})` : ""));
  process.exit(failures.length === 0 ? 0 : 1);
}

// ---------------------------------------------------------------- NetworkPolicies
function checkNetworkPolicies(scenario, objects, components, configMaps, EXPECTED_PATHS) {
  const policies = objects.filter((o) => o.kind === "NetworkPolicy");
  if (!check(policies.length > 0, scenario, "has NetworkPolicies")) return;
  const podLabels = (c) => components.get(c)?.spec?.template?.metadata?.labels ?? {};
  const containerPorts = (c) => (components.get(c)?.spec?.template?.spec?.containers ?? []).flatMap((x) => x.ports ?? []);
  const portNumber = (c, name) => containerPorts(c).find((p) => p.name === name)?.containerPort;
  const anyContainer = (c, flag) => (components.get(c)?.spec?.template?.spec?.containers ?? []).map((x) => setting(x, flag, configMaps)).find((v) => v !== undefined);

  const kafkaPorts = new Set(COMPONENTS.flatMap((c) => portOfUrl(anyContainer(c, "--events"), "kafka", DEFAULT_KAFKA_PORT)));
  const postgresPorts = new Set(portOfUrl(anyContainer("registry", "--db"), "postgres(?:ql)?", DEFAULT_POSTGRES_PORT));

  // The peer a NetworkPolicyPeer stands for, as the table names them.
  const peerClass = (policy, peer) => {
    if (peer === undefined) return "outside";
    if (peer.ipBlock || peer.namespaceSelector) return "outside";
    if (peer.podSelector?.matchLabels?.["app.kubernetes.io/component"] === "test") return "helm-test";
    if (peer.podSelector) {
      const matched = COMPONENTS.filter((c) => components.has(c) && selects(peer.podSelector, podLabels(c)));
      if (matched.length === 0) return "outside";
      return matched.map((c) => `component:${c}`);
    }
    return "outside";
  };

  // Every (component, direction, port, protocol, peer) the policies admit.
  const admitted = new Map();
  const admit = (entry, origin) => {
    const key = `${entry.component} ${entry.direction} ${entry.port}/${entry.protocol} ${entry.peer}`;
    if (!admitted.has(key)) admitted.set(key, { ...entry, origins: [] });
    admitted.get(key).origins.push(origin);
  };
  for (const c of COMPONENTS) {
    if (!components.has(c)) continue;
    const mine = policies.filter((p) => selects(p.spec?.podSelector ?? {}, podLabels(c)) || isEmptySelector(p.spec?.podSelector));
    const types = new Set(mine.flatMap((p) => p.spec?.policyTypes ?? ["Ingress", ...(p.spec?.egress ? ["Egress"] : [])]));
    check(types.has("Ingress"), `component ${c}`, "a NetworkPolicy with policyTypes Ingress selects its pods (otherwise all ingress is open)");
    check(types.has("Egress"), `component ${c}`, "a NetworkPolicy with policyTypes Egress selects its pods (otherwise all egress is open)");
    for (const p of mine) {
      for (const [direction, rules, peersKey] of [["ingress", p.spec?.ingress, "from"], ["egress", p.spec?.egress, "to"]]) {
        const declared = p.spec?.policyTypes ?? ["Ingress", ...(p.spec?.egress ? ["Egress"] : [])];
        if (!declared.includes(direction === "ingress" ? "Ingress" : "Egress")) continue;
        for (const [index, rule] of (rules ?? []).entries()) {
          const origin = `${describe(p)} ${direction}[${index}]`;
          const peers = rule[peersKey]?.length ? rule[peersKey] : [undefined];
          const ports = rule.ports?.length ? rule.ports : [undefined];
          for (const peer of peers) {
            const classes = [peerClass(p, peer)].flat();
            for (const port of ports) {
              if (port === undefined || port.port === undefined) {
                for (const cls of classes) admit({ component: c, direction, port: "*", protocol: port?.protocol ?? "*", peer: cls }, origin);
                continue;
              }
              const protocol = port.protocol ?? "TCP";
              const names = [];
              if (direction === "ingress") {
                // A named or numbered port of this component's pods.
                const cp = containerPorts(c).find((x) => x.name === port.port || x.containerPort === port.port);
                names.push(cp?.name ?? String(port.port));
                if (port.endPort !== undefined) names.push(`${port.port}-${port.endPort}`);
              } else {
                for (const cls of classes) {
                  const target = cls.startsWith("component:") ? cls.slice(10) : undefined;
                  const cp = target ? containerPorts(target).find((x) => x.name === port.port || x.containerPort === port.port) : undefined;
                  if (cp) names.push(`${cp.name}@${target}`);
                  else if (kafkaPorts.has(port.port)) names.push("{kafka}");
                  else if (postgresPorts.has(port.port)) names.push("{postgres}");
                  else names.push(port.endPort !== undefined ? `${port.port}-${port.endPort}` : String(port.port));
                }
              }
              for (const name of new Set(names)) for (const cls of classes) admit({ component: c, direction, port: name, protocol, peer: cls }, origin);
            }
          }
        }
      }
    }
  }

  const expectedKey = (e, peer) => `${e.component} ${e.direction} ${e.port}/${e.protocol} ${peer}`;
  const expected = new Set(EXPECTED_PATHS.flatMap((e) => e.peers.map((peer) => expectedKey(e, peer))));
  for (const e of EXPECTED_PATHS) {
    if (!components.has(e.component)) continue;
    for (const peer of e.peers) {
      const key = expectedKey(e, peer);
      const wildcard = [...admitted.values()].some((a) => a.component === e.component && a.direction === e.direction && a.peer === peer && a.port === "*");
      check(admitted.has(key) || wildcard, `NetworkPolicies of ${e.component}`,
        `must admit ${e.direction} ${e.direction === "ingress" ? "from" : "to"} ${peer} on ${e.port}/${e.protocol} (a path the services use)`);
    }
  }
  for (const [key, a] of admitted) {
    check(expected.has(key), `NetworkPolicies of ${a.component}`,
      `admit ${a.direction} ${a.direction === "ingress" ? "from" : "to"} ${a.peer} on ${a.port}/${a.protocol}, a path the services do not use (${a.origins.join("; ")})`);
  }
  console.log(`network paths admitted for ${scenario}:`);
  for (const key of [...admitted.keys()].sort()) console.log(`  ${key}`);
}

try {
  main();
} catch (error) {
  console.error(`operator-checks: ${error.stack ?? error}`);
  process.exit(2);
}
