#!/usr/bin/env bash
# Prepare, on a machine with package registries, what an offline GPU machine needs to run this
# project and its test suite (`scripts/gpu_check.sh` then runs there). Writes the ignored folder
# .gpu/ in the project's root:
#   .gpu/site.txz        the Python packages a stock CUDA image (CPython 3.12, torch, torchvision,
#                        numpy, scipy, matplotlib, pytest) lacks: kornia, dm-control, mujoco,
#                        gymnasium and their small dependencies, and pytest-timeout (the suite's
#                        addopts name --timeout; where the image has it, pytest loads one), for manylinux x86_64. Unused
#                        package data (dm_control's locomotion and dog assets, labmaze, Blender
#                        files, mujoco's experimental code, headers and tests) is left out: about 17 MB (xz).
#   .gpu/gl/*.deb        the EGL / GLVND loader libraries, for headless MuJoCo rendering (EGL).
#   .gpu/data/           with DATA=1 (the default): the data: cifar10-jpeg.zip with the whole test
#                        split and TRAIN_PER_CLASS training images per class (default 5000: all of
#                        them), and catdog-128.zip, each as a lossless pack (scripts/jpeg_pack.py:
#                        the JPEG header that every image repeats is stored once, then xz; the whole
#                        CIFAR-10 is 18 MB instead of 63, the cat/dog photos 11.3 instead of 12.7),
#                        checked here by unpacking it; gpu_check.sh rebuilds the zips from them.
#
#   bash scripts/gpu_bundle.sh                       # everything, about 47 MB
#   DATA=0 bash scripts/gpu_bundle.sh                # packages and loaders only
#   TRAIN_PER_CLASS=210 bash scripts/gpu_bundle.sh   # a CIFAR-10 subset (the demo's 2,048 training
#                                                    # images; the tests of the whole split are skipped)
#   PACK=0 bash scripts/gpu_bundle.sh                # the zips as they are (63 + 12.7 MB)
#   EXTRA="pytest-xdist==3.8.0" bash scripts/gpu_bundle.sh   # more wheels into the site
#   PY=3.11 bash scripts/gpu_bundle.sh               # for another CPython on the GPU machine
#   REF_CURL=~/curl REF_CUT=~/cut bash scripts/gpu_bundle.sh   # also the reference code to time beside
#                                                    # ours: git checkouts of MishaLaskin/curl and
#                                                    # taesungp/contrastive-unpaired-translation, copied
#                                                    # without .git and images into .gpu/refs/{curl,cut}
#                                                    # (REFERENCE_COMMIT names their commit; gpu_check.sh
#                                                    # finds them there)
#   PACK=0 SPLIT_MB=30 bash scripts/gpu_bundle.sh    # the unpacked zips in 30 MB parts (.gpu/parts1,
#                                                    # .gpu/parts2, ...: one per command)
#
# The whole tree a GPU job sends must often stay small (a few tens of MB): `du -sh .gpu` at the
# end says what this adds. Data is read from $DATA_ROOT (default ../shared/data).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
PY=${PY:-3.12}
DATA=${DATA:-1}
TRAIN_PER_CLASS=${TRAIN_PER_CLASS:-5000}
PACK=${PACK:-1}
DATA_ROOT=${DATA_ROOT:-../shared/data}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/gl .gpu/whl

plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
pin() { python3 - "$1" <<'PY'
import re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
name = sys.argv[1]
for dep in deps:
    if re.split(r"[<>=!~ ;\[]", dep, maxsplit=1)[0].lower() == name:
        version = re.search(r"==\s*([\w.]+)", dep)
        print(f"{name}=={version.group(1)}" if version else name)
        break
else:
    print(name)
PY
}
pkgs="$(pin mujoco) $(pin dm-control) $(pin kornia) kornia-rs==0.2.0 $(pin gymnasium) farama-notifications
      dm-env dm-tree glfw pyopengl pytest-timeout==2.4.0 ${EXTRA:-}"
echo "wheels for CPython $PY: $pkgs" | tr -s ' \n' ' '; echo
for p in $pkgs; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
    "${plat[@]}" -d .gpu/whl "$p" 2>&1 | grep -v -e '^WARNING: Location' -e 'Running pip as' || true
done
tmp=$(mktemp -d)
python3 -m pip install -q --no-deps --no-compile --target "$tmp/site" --python-version "$PY" --implementation cp \
  "${plat[@]}" --only-binary=:all: .gpu/whl/*.whl 2>&1 | grep -v -e '^WARNING: Location' -e 'Running pip as' || true
rm -rf "$tmp/site/dm_control/locomotion" "$tmp/site/dm_control/blender" "$tmp/site/mujoco/experimental" \
       "$tmp/site/dm_control/suite/dog_assets" "$tmp/site/dm_control/suite/all_domains.png" \
       "$tmp/site/labmaze" "$tmp/site"/labmaze-*.dist-info "$tmp/site/OpenGL/DLLS" "$tmp/site/bin" \
       "$tmp/site/mujoco/include" "$tmp/site/mujoco/testdata" "$tmp/site/mujoco"/*_test.py
find "$tmp/site" -name __pycache__ -prune -exec rm -rf {} +
tar -cJf .gpu/site.txz -C "$tmp" site  # xz: a third smaller than gzip, which matters where transfers are capped
rm -rf "$tmp" .gpu/whl

o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
apt-get $o update -qq >/dev/null
(cd .gpu/gl && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)

if [ "$DATA" = 1 ]; then
  mkdir -p .gpu/data
  python3 - "$DATA_ROOT" .gpu/data "$TRAIN_PER_CLASS" <<'PY'
"""cifar10-jpeg.zip: the whole test split and the first N training images of each class,
copied member by member (no recompression)."""
import collections, shutil, sys, zipfile
source, target, per_class = sys.argv[1], sys.argv[2], int(sys.argv[3])
kept = collections.Counter()
with zipfile.ZipFile(f"{source}/cifar10-jpeg.zip") as src, \
        zipfile.ZipFile(f"{target}/cifar10-jpeg.zip", "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        parts = info.filename.split("/")
        if len(parts) == 4 and parts[1] == "train":
            if kept[parts[2]] >= per_class:
                continue
            kept[parts[2]] += 1
        dst.writestr(info, src.read(info))
shutil.copy(f"{source}/catdog-128.zip", f"{target}/catdog-128.zip")
PY
  if [ "$PACK" = 1 ]; then
    for f in .gpu/data/*.zip; do
      python3 scripts/jpeg_pack.py pack "$f" "$f.jpack"
      python3 scripts/jpeg_pack.py unpack "$f.jpack" "/tmp/$(basename "$f").check" >/dev/null  # checks every member
      rm -f "$f" "/tmp/$(basename "$f").check"
    done
  fi
  if [ -n "${SPLIT_MB:-}" ]; then
    # Each data file over SPLIT_MB travels in parts, one per folder .gpu/parts<i>/, so that every
    # command carries one of them; gpu_check.sh joins them once all have arrived (<file>.parts holds
    # the whole file's sha256 and the parts' names, in order).
    rm -rf .gpu/parts*
    for f in .gpu/data/*; do
      [ "$(stat -c %s "$f")" -gt $((SPLIT_MB * 1000000)) ] || continue
      name=$(basename "$f")
      split -b "${SPLIT_MB}M" -d -a 2 "$f" "/tmp/$name.part"
      { sha256sum "$f" | cut -d' ' -f1; (cd /tmp && ls "$name".part[0-9]*); } > "/tmp/$name.parts"
      i=1
      for part in /tmp/"$name".part[0-9]*; do
        mkdir -p ".gpu/parts$i" && mv "$part" ".gpu/parts$i/"
        i=$((i + 1))
      done
      mv "/tmp/$name.parts" .gpu/parts1/
      rm "$f"
    done
    ls -d .gpu/parts* 2>/dev/null | sed 's/^/parts folder: /'
  fi
fi
for ref in "curl ${REF_CURL:-}" "cut ${REF_CUT:-}"; do
  read -r name tree <<< "$ref"
  [ -n "$tree" ] || continue
  mkdir -p ".gpu/refs/$name"
  tar -C "$tree" --exclude=.git --exclude=imgs --exclude=datasets --exclude='*.png' --exclude='*.jpg' \
    --exclude='*.gif' -cf - . | tar -C ".gpu/refs/$name" -xf -
  git -C "$tree" rev-parse HEAD > ".gpu/refs/$name/REFERENCE_COMMIT"
  echo "reference $name: $(cat ".gpu/refs/$name/REFERENCE_COMMIT") ($(du -sh ".gpu/refs/$name" | cut -f1))"
done
du -sh .gpu/site.txz .gpu/gl ${DATA:+.gpu/data} 2>/dev/null || true
du -sh .gpu
# What one command sends with all of .gpu/: the tracked tree, less results/ and docs/weights/rl
# (which no test on the GPU machine needs; docs/benchmarks.md), plus .gpu/ as written here.
bytes() { xargs -0 -r stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
tree=$(git ls-files -z | bytes); left=$(git ls-files -z results docs/weights/rl | bytes)
kit=$(du -sb .gpu | cut -f1)
echo "one command with the tree less results/ and docs/weights/rl, and all of .gpu/:" \
  "$(( (tree - left + kit) / 1000000 )) MB (the whole tree: $(( (tree + kit) / 1000000 )) MB)"
echo "On the GPU machine, from the project's root: bash scripts/gpu_check.sh"
