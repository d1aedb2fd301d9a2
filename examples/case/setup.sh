#!/bin/sh
# A working copy for the example: a checkout that fails, in app/ and in prod/, and its fix.
set -e
cd "$(dirname "$0")"
rm -rf work
mkdir -p work/app work/prod work/patches
printf 'def checkout():\n    raise RuntimeError("card declined")\n' > work/app/checkout.py
cp work/app/checkout.py work/prod/checkout.py
printf 'def checkout():\n    return "ok"\n' > work/patches/checkout.py
echo "examples/case/work is ready: app/ and prod/ hold the failing checkout"
