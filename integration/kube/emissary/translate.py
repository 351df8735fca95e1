"""Runs Emissary's own translator (Python IR -> Envoy v3 config) on Kubernetes YAML read from stdin
and prints the HTTP routes it compiles, one JSON document on stdout:

  {"listeners": [{"name", "port", "virtual_hosts": [{"domains", "tls", "routes": [
      {"prefix", "path", "regex", "headers": {name: exact}, "action": "route" | "redirect",
       "cluster", "https_redirect", "prefix_rewrite", "ext_authz_disabled"}]}]}],
   "errors": {...}}

Usage: python3 translate.py < resources.yaml  (PYTHONPATH must hold Emissary's python/ambassador/src).
Test tooling for integration/kube/emissary-route.test.ts; not shipped.
"""

import json
import logging
import sys

from ambassador.compile import Compile


def route_view(rt):
    match = rt.get("match", {})
    headers = {}
    for h in match.get("headers", []):
        sm = h.get("string_match", {})
        headers[h["name"]] = sm.get("exact", sm)
    per_filter = rt.get("typed_per_filter_config", {})
    authz = per_filter.get("envoy.filters.http.ext_authz", {})
    out = {
        "prefix": match.get("prefix"),
        "path": match.get("path"),
        "regex": match.get("safe_regex", {}).get("regex"),
        "headers": headers,
        "ext_authz_disabled": bool(authz.get("disabled", False)),
    }
    if "redirect" in rt:
        out["action"] = "redirect"
        out["https_redirect"] = bool(rt["redirect"].get("https_redirect", False))
    else:
        out["action"] = "route"
        out["cluster"] = rt.get("route", {}).get("cluster")
        out["prefix_rewrite"] = rt.get("route", {}).get("prefix_rewrite")
    return out


def main():
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    result = Compile(logging.getLogger("translate"), sys.stdin.read(), k8s=True)
    ir = result["ir"]
    xds = result["xds"].as_dict()
    listeners = []
    for listener in xds["static_resources"]["listeners"]:
        vhosts = []
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                rc = f.get("typed_config", {}).get("route_config")
                if not rc or "virtual_hosts" not in rc:
                    continue
                for vh in rc["virtual_hosts"]:
                    vhosts.append(
                        {
                            "domains": vh["domains"],
                            "tls": "transport_socket" in chain,
                            "routes": [route_view(r) for r in vh["routes"]],
                        }
                    )
        listeners.append(
            {
                "name": listener["name"],
                "port": listener["address"]["socket_address"]["port_value"],
                "virtual_hosts": vhosts,
            }
        )
    print(json.dumps({"listeners": listeners, "errors": ir.aconf.errors}, default=str))


if __name__ == "__main__":
    main()
