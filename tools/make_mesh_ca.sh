#!/usr/bin/env bash
# Makes a CA for a mesh's mutual TLS and one certificate it signs for the mesh's processes
# (router and workers present the same one; the CA is what they check), with openssl:
#   DIR/ca.pem, DIR/ca-key.pem (keep this one off the cluster), DIR/mesh.pem, DIR/mesh-key.pem
# Then: starmesh router|worker --tls-ca DIR/ca.pem --tls-cert DIR/mesh.pem --tls-key DIR/mesh-key.pem
# or the Kubernetes Secret deploy/k8s/base/kustomization.yaml describes.
# Usage: bash tools/make_mesh_ca.sh DIR [DAYS]   (DAYS: validity, 365 by default)
set -euo pipefail
dir="${1:?usage: make_mesh_ca.sh DIR [DAYS]}"
days="${2:-365}"
mkdir -p "$dir"
umask 077
key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${key[@]}" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days "$days" \
  -subj "/CN=starmesh mesh CA" 2>/dev/null
openssl req "${key[@]}" -keyout "$dir/mesh-key.pem" -out "$dir/mesh.csr" -subj "/CN=starmesh mesh" 2>/dev/null
openssl x509 -req -in "$dir/mesh.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
  -out "$dir/mesh.pem" -days "$days" 2>/dev/null
rm -f "$dir/mesh.csr"
chmod 644 "$dir/ca.pem" "$dir/mesh.pem"
openssl verify -CAfile "$dir/ca.pem" "$dir/mesh.pem"
echo "make_mesh_ca: $dir/ca.pem (CA), $dir/mesh.pem + $dir/mesh-key.pem (the mesh's certificate), $days days"
