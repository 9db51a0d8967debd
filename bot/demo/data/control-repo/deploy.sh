#!/bin/bash
# Deploy one component to one environment: show the helmfile diff, then sync.
set -o errexit
set -o nounset
set -o pipefail

usage() {
    echo "usage: $0 <component> [environment]" >&2
    exit 2
}

main() {
    local component="${1:-}"
    local environment="${2:-}"
    local here helmfile_path rc

    [[ -n "$component" ]] || usage
    if [[ -z "$environment" ]]; then
        environment="$(cat /etc/wmcs-project 2>/dev/null || echo local)"
    fi
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    helmfile_path="$here/components/$component/helmfile.yaml"
    if [[ ! -f "$helmfile_path" ]]; then
        echo "unknown component: $component" >&2
        exit 2
    fi

    rc=0
    helmfile -e "$environment" --file "$helmfile_path" \
        diff --detailed-exitcode --suppress-secrets --context 5 || rc=$?
    if [[ "$rc" -eq 0 ]]; then
        echo "no changes for $component in $environment"
        return 0
    elif [[ "$rc" -ne 2 ]]; then
        echo "helmfile diff failed with exit code $rc" >&2
        return "$rc"
    fi
    helmfile -e "$environment" --file "$helmfile_path" sync --wait
}

main "$@"
