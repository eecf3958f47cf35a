# Shared by the functions' and the layer's Makefiles, which `sam build` runs (Metadata BuildMethod: makefile).
# pip fetches wheels for the Lambda runtime (Python 3.12 on Amazon Linux 2023, glibc 2.34, x86_64) whatever
# Python and platform run the build, so `sam build` needs neither Docker nor a local Python 3.12.
LAMBDA_PIP = python3 -m pip install --quiet --upgrade --only-binary=:all: --implementation cp --python-version 3.12 \
	--platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64
