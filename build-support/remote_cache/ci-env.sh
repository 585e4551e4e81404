# Sourced by .ci/run, the hosted workflow and benchmarks/ci: the environment for CI's Pants runs.
# It makes cache keys equal on every CI machine, whatever its HOME, PATH or checkout directory (a
# key that embeds one of them is a miss everywhere else), and sets the remote cache defaults that
# pants.ci.toml reads. Paths that enter keys live under DYNAMO_CI_STABLE_ROOT (default
# /opt/dynamo-images, where pants.toml already installs Go for the same reason).
# shellcheck shell=bash

_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_stable=${DYNAMO_CI_STABLE_ROOT:-/opt/dynamo-images}
export PANTS_CONFIG_FILES=pants.ci.toml

if mkdir -p "$_stable" 2>/dev/null && [[ -w "$_stable" ]]; then
  # ./pants makes its venv, tools (pex CLI) and the stand-in wheels' copy under this folder
  # (default: under HOME): one fixed place, shared by every CI run on the machine whatever HOME is.
  export DYNAMO_IMAGES_CACHE="${DYNAMO_IMAGES_CACHE:-$_stable/launcher}"
else
  echo "ci-env: cannot write $_stable; cache keys will depend on HOME" >&2
fi

# Interpreters come from pyenv's root ([python-bootstrap] in pants.ci.toml), not from PATH.
if [[ -z "${PYENV_ROOT:-}" ]] && command -v pyenv >/dev/null; then
  PYENV_ROOT=$(pyenv root) && export PYENV_ROOT
fi

# Remote cache settings that pants.ci.toml reads (DYNAMO_REAPI_ADDRESS is set by the caller).
export DYNAMO_REAPI_INSTANCE="${DYNAMO_REAPI_INSTANCE:-dynamo-images}"
export DYNAMO_REAPI_HEADERS_FILE="${DYNAMO_REAPI_HEADERS_FILE:-$_root/build-support/remote_cache/no-headers.yaml}"
unset _root _stable
