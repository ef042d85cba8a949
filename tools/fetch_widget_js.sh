#!/usr/bin/env bash
# Fetch the JavaScript that renders the book's ipywidgets in the static HTML, offline.
#
# The built book embeds each notebook's widget state; a widget manager in the page turns that
# state into live widgets. By default myst-nb loads the manager from a CDN, so without network
# the widgets stay blank. This script puts local copies in book/_static/ (which _config.yml
# points myst-nb at, through nb_ipywidgets_js):
#   require.js    from the npm package requirejs
#   embed-amd.js  from the npm package @jupyter-widgets/html-manager (1.0.x = ipywidgets 8):
#                 it bundles @jupyter-widgets/base and @jupyter-widgets/controls as AMD
#                 modules, so the built-in widgets need nothing else.
#   mathjax/      from the npm package mathjax 3.2.2 (es5/tex-chtml.js, its CHTML fonts, the TeX
#                 extensions it autoloads, the menu and assistive-MathML parts): the formulas
#                 of the methods page render offline (_config.yml sets mathjax_path)
# All are fetched with `npm pack` (npm checks each tarball's integrity against the registry)
# and then checked against the SHA-256 pinned below. Idempotent: files already present with
# the pinned checksum are kept. Usage: bash tools/fetch_widget_js.sh [DEST_DIR]
set -euo pipefail

HTML_MANAGER_VERSION=1.0.15   # matches ipywidgets 8.1.9 (jupyterlab_widgets 3.0.17: controls ^5.0.13)
REQUIREJS_VERSION=2.3.8
EMBED_SHA256=ca87dff57c70ffb2658794fde0eab0e27e5f5472a1f5df7ab2b08e1039fc4b72
REQUIRE_SHA256=c1fc6b1d53af7522f78d664922abb32acac64ed0ecccb8f907f1e6fc7262563a
MATHJAX_VERSION=3.2.2
MATHJAX_TGZ_SHA256=1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${1:-$root/book/_static}

ok() {  # ok FILE SHA256: the file exists and has that checksum
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

mathjax_ok() {  # the unpacked MathJax tree is complete (its stamp names the tarball's checksum)
  [ -f "$dest/mathjax/.complete" ] && [ "$(cat "$dest/mathjax/.complete")" = "$MATHJAX_TGZ_SHA256" ]
}

if ok "$dest/embed-amd.js" "$EMBED_SHA256" && ok "$dest/require.js" "$REQUIRE_SHA256" && mathjax_ok; then
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "fetch_widget_js.sh: npm not found; install Node.js and npm (Debian: apt-get install -y npm)" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" \
  "requirejs@$REQUIREJS_VERSION" "mathjax@$MATHJAX_VERSION" >/dev/null)
mkdir -p "$tmp/hm" "$tmp/rq" "$dest"
tar -xzf "$tmp/jupyter-widgets-html-manager-$HTML_MANAGER_VERSION.tgz" -C "$tmp/hm" package/dist/embed-amd.js
tar -xzf "$tmp/requirejs-$REQUIREJS_VERSION.tgz" -C "$tmp/rq" package/require.js

for pair in "$tmp/hm/package/dist/embed-amd.js:$EMBED_SHA256" "$tmp/rq/package/require.js:$REQUIRE_SHA256"; do
  file=${pair%%:*} want=${pair##*:}
  if ! ok "$file" "$want"; then
    echo "fetch_widget_js.sh: checksum mismatch for $(basename "$file") (expected sha256 $want)" >&2
    exit 1
  fi
done

# atomic: copy under a temporary name, then rename
for file in "$tmp/hm/package/dist/embed-amd.js" "$tmp/rq/package/require.js"; do
  name=$(basename "$file")
  cp "$file" "$dest/.$name.tmp"
  mv -f "$dest/.$name.tmp" "$dest/$name"
done

# MathJax: check the tarball, unpack the parts the book uses into a temporary folder, stamp it
# complete and rename it into place (a killed run never leaves a tree that looks complete)
mj="$tmp/mathjax-$MATHJAX_VERSION.tgz"
if ! ok "$mj" "$MATHJAX_TGZ_SHA256"; then
  echo "fetch_widget_js.sh: checksum mismatch for mathjax-$MATHJAX_VERSION.tgz (expected sha256 $MATHJAX_TGZ_SHA256)" >&2
  exit 1
fi
mkdir -p "$tmp/mj"
tar -xzf "$mj" -C "$tmp/mj" package/es5/tex-chtml.js package/es5/output/chtml/fonts/woff-v2 \
  package/es5/input/tex/extensions package/es5/ui package/es5/a11y/assistive-mml.js
echo "$MATHJAX_TGZ_SHA256" > "$tmp/mj/package/es5/.complete"
rm -rf "$dest/.mathjax.tmp" && cp -r "$tmp/mj/package/es5" "$dest/.mathjax.tmp"
rm -rf "$dest/mathjax" && mv "$dest/.mathjax.tmp" "$dest/mathjax"
