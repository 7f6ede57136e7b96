#!/usr/bin/env python3
"""Structural check of packaging/k8s/kustomization.yaml, for which no JSON
schema is reachable offline (kubernetes-validate ships only the API
server's schemas): only known keys, every listed resource exists, every
manifest in the folder is listed, and every image the manifests use has an
`images:` entry."""

import re
import sys
from pathlib import Path

import yaml  # PyYAML, a dependency of kubernetes-validate

KNOWN = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}


def main(folder):
    folder = Path(folder)
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    errors = []
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        errors.append("apiVersion/kind is not kustomize.config.k8s.io/v1beta1 Kustomization")
    errors += [f"unknown key {key}" for key in set(k) - KNOWN]
    listed = set(k.get("resources", []))
    present = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    errors += [f"listed but missing: {r}" for r in sorted(listed - present)]
    errors += [f"not listed: {r}" for r in sorted(present - listed)]
    images = {i["name"] for i in k.get("images", [])}
    for name in sorted(present & listed):
        for doc in yaml.safe_load_all((folder / name).read_text()):
            if doc.get("metadata", {}).get("namespace", k.get("namespace")) != k.get("namespace"):
                errors.append(f"{name}: {doc['kind']} outside namespace {k.get('namespace')}")
            text = yaml.safe_dump(doc)
            for image in re.findall(r"image: (\S+)", text):
                if image.split(":")[0] not in images:
                    errors.append(f"{name}: image {image} has no images: entry")
    for e in errors:
        print(f"kustomization: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
