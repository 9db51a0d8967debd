#!/bin/bash
# Print one deployment secret by name; used from .yaml.gotmpl values files via
#   {{ exec "../../../helpers/get_secret.sh" (list "<name>") }}
# (helmfile runs it from the values file's directory: components/<component>/values)
set -o errexit
set -o nounset
set -o pipefail

name="${1:-}"
if [[ ! "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]]; then
    echo "usage: $0 <secret-name>" >&2
    exit 2
fi
secrets_dir="${TOOLFORGE_DEPLOY_SECRETS_DIR:-/etc/toolforge-deploy/secrets}"
if [[ ! -r "$secrets_dir/$name" ]]; then
    echo "secret $name not found in $secrets_dir" >&2
    exit 1
fi
printf '%s' "$(cat "$secrets_dir/$name")"
