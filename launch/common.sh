# Sourced by the launch/ scripts: dry runs and argument quoting in one place.
#   DRY_RUN=1 (or --dry_run as a script's first argument) prints every command, one per
#   line as a shell would read it back, instead of running it.

# Runs "$@", or prints it quoted (`printf %q`) when DRY_RUN=1.
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    quote "$@"; echo
  else
    "$@"
  fi
}

# Prints its arguments as one shell-quoted string (no newline): `bash -c "$(quote "$@")"`
# runs exactly "$@", so arguments with spaces or quotes survive a remote shell.
quote() {
  local out="" arg
  for arg in "$@"; do
    out+="$(printf '%q' "$arg") "
  done
  printf '%s' "${out% }"
}

die() { echo "$(basename "$0"): $*" >&2; exit 2; }
