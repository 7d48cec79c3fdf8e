#!/usr/bin/env node
// Validates every object of a multi-document YAML stream (the output of `helm template` or
// `kubectl kustomize`) against the Kubernetes API's OpenAPI schemas, offline: the models of
// kubernetes-models (Kubernetes' OpenAPI schemas compiled to ajv validators),
// @kubernetes-models/prometheus-operator for ServiceMonitor, and kafkatopic.schema.json
// (from Strimzi's CRD) for KafkaTopic. An object of a kind none of them knows is an error,
// never skipped. Prints each object checked and every error with its JSON path.
//
//   node deploy/checks/validate-manifests.mjs FILE|-
//
// Exit status: 0 when every object is valid, 1 otherwise, 2 on a usage or YAML error.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, importTool, readYamlStream, requireTool } from "./lib.mjs";

const here = dirname(fileURLToPath(import.meta.url));

// Every model class below a module namespace, keyed "apiVersion/Kind".
function collectModels(namespace, into, seen = new Set()) {
  if (namespace === null || (typeof namespace !== "object" && typeof namespace !== "function")) return into;
  if (seen.has(namespace)) return into;
  seen.add(namespace);
  if (typeof namespace === "function") {
    if (typeof namespace.apiVersion === "string" && typeof namespace.kind === "string") {
      into.set(`${namespace.apiVersion}/${namespace.kind}`, namespace);
    }
    return into;
  }
  for (const value of Object.values(namespace)) collectModels(value, into, seen);
  return into;
}

// Validators for the custom resources no npm model covers: plain JSON schemas with ajv.
function customValidators() {
  const Ajv = requireTool("ajv").default;
  const ajv = new Ajv({ allErrors: true, strict: false });
  const kafkaTopic = ajv.compile(JSON.parse(readFileSync(join(here, "kafkatopic.schema.json"), "utf8")));
  return new Map([["kafka.strimzi.io/v1beta2/KafkaTopic", (object) => (kafkaTopic(object) ? [] : kafkaTopic.errors)]]);
}

async function main() {
  const input = process.argv[2];
  if (!input) {
    console.error("usage: validate-manifests.mjs FILE|-");
    process.exit(2);
  }
  let objects;
  try {
    objects = readYamlStream(input);
  } catch (error) {
    console.error(`validate-manifests: ${error.message}`);
    process.exit(2);
  }
  const models = collectModels(await importTool("kubernetes-models"), new Map());
  collectModels(await importTool("@kubernetes-models/prometheus-operator"), models);
  const custom = customValidators();

  let failures = 0;
  for (const [index, object] of objects.entries()) {
    const name = `#${index + 1} ${describe(object)}`;
    const key = `${object?.apiVersion}/${object?.kind}`;
    let errors;
    if (typeof object !== "object" || Array.isArray(object)) {
      errors = [{ instancePath: "", message: "is not an object" }];
    } else if (!object.metadata?.name) {
      errors = [{ instancePath: "/metadata/name", message: "is required" }];
    } else if (custom.has(key)) {
      errors = custom.get(key)(object);
    } else if (models.has(key)) {
      const Model = models.get(key);
      try {
        new Model(object).validate();
        errors = [];
      } catch (error) {
        errors = error.errors ?? [{ instancePath: "", message: error.message }];
      }
    } else {
      errors = [{ instancePath: "", message: `unknown kind ${key}: no schema for it (add one, never skip it)` }];
    }
    if (errors.length === 0) {
      console.log(`ok      ${name}`);
    } else {
      failures++;
      console.log(`INVALID ${name}`);
      for (const error of errors) {
        const extra = error.params?.allowedValues ? ` (${error.params.allowedValues.join(", ")})` : "";
        console.log(`          ${error.instancePath || "/"}: ${error.message}${extra}`);
      }
    }
  }
  if (objects.length === 0) {
    console.log(`INVALID ${input}: no objects`);
    failures++;
  }
  console.log(`validate-manifests: ${objects.length} objects, ${failures} invalid`);
  process.exit(failures === 0 ? 0 : 1);
}

main().catch((error) => {
  console.error(`validate-manifests: ${error.stack ?? error}`);
  process.exit(2);
});
