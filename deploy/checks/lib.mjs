// Shared by the deploy checks: loading the npm packages that scripts/fetch-k8s-tools.sh put
// into the cache (nothing is installed next to these scripts), and reading YAML streams.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export const nodeModules =
  process.env.STIP_K8S_NODE_MODULES ??
  join(process.env.STIP_CACHE_DIR ?? join(homedir(), ".cache/stip-compliance"),
       "tools/k8s-tools/node_modules");

const require = createRequire(join(nodeModules, "noop.js"));

// requireTool: a CommonJS package (yaml, ajv) from the cache.
export function requireTool(name) {
  try {
    return require(name);
  } catch (error) {
    throw new Error(`cannot load ${name} from ${nodeModules} (run scripts/fetch-k8s-tools.sh): ${error.message}`);
  }
}

// importTool: an ES-module-only package (kubernetes-models), by its file in the cache.
export async function importTool(name, file = "index.js") {
  return import(pathToFileURL(join(nodeModules, name, file)).href);
}

// readYamlStream: every non-empty document of a multi-document YAML file ("-" is stdin),
// as plain objects; a document that does not parse is an error naming its position.
export function readYamlStream(path) {
  const YAML = requireTool("yaml");
  const text = readFileSync(path === "-" ? 0 : path, "utf8");
  const objects = [];
  YAML.parseAllDocuments(text, { uniqueKeys: true }).forEach((doc, index) => {
    if (doc.errors.length > 0) {
      throw new Error(`${path}: YAML document ${index + 1}: ${doc.errors.map((e) => e.message).join("; ")}`);
    }
    const value = doc.toJS({ maxAliasCount: 100 });
    if (value !== null && value !== undefined) objects.push(value);
  });
  return objects;
}

export function readYaml(path) {
  const YAML = requireTool("yaml");
  return YAML.parse(readFileSync(path, "utf8"), { uniqueKeys: true }) ?? {};
}

export function describe(object) {
  const ns = object?.metadata?.namespace ? `${object.metadata.namespace}/` : "";
  return `${object?.apiVersion}/${object?.kind} ${ns}${object?.metadata?.name}`;
}
