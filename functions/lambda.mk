# Shared by the functions' and the layer's Makefiles, which `sam build` runs (Metadata BuildMethod: makefile).
# pip fetches wheels for the Lambda runtime (Python 3.12 on Amazon Linux 2023, glibc 2.34, x86_64) whatever
# Python and platform run the build, so `sam build` needs neither Docker nor a local Python 3.12.
# --no-compile: pip would compile with the Python running the build, whose .pyc files Python 3.12 never reads.
LAMBDA_PIP = python3 -m pip install --quiet --upgrade --no-compile --only-binary=:all: --implementation cp \
	--python-version 3.12 --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
	--platform manylinux2014_x86_64

# Lambda counts a function and its layers unzipped against 250 MB. These remove, from the folder given
# ($(call ...,folder)), what the functions never import (README, "Predict speed and size"):
# numpy's test suites, test-only extension modules, f2py and command-line scripts; type stubs;
PRUNE_NUMPY = find $(1)/numpy -type d -name tests -prune -exec rm -rf {} + ; \
	rm -rf $(1)/numpy/f2py $(1)/numpy/_core/_*tests.*.so $(1)/numpy/_core/_simd.*.so $(1)/bin ; \
	find $(1) -name '*.pyi' -delete
# Pillow's AVIF codec (not a format the functions accept: sightline.imaging.ALLOWED_FORMATS);
PRUNE_PILLOW = rm -rf $(1)/PIL/_avif.*.so $(1)/pillow.libs/libavif-*.so*
# boto3's stack, which powertools' X-Ray SDK pulls in: the Lambda runtime has boto3 and botocore, and the
# functions already import the runtime's boto3 (the layer does not ship it), so one pair of versions runs;
PRUNE_BOTO = rm -rf $(1)/botocore $(1)/botocore-* $(1)/s3transfer $(1)/s3transfer-* $(1)/jmespath \
	$(1)/jmespath-* $(1)/dateutil $(1)/python_dateutil-* $(1)/six.py $(1)/six-* $(1)/urllib3 $(1)/urllib3-*
# onnxruntime's offline tools (transformers, quantization, tools, the onnx backend: they import onnx, torch or
# protobuf) and its C API library, which the Python module does not load (it links the runtime in itself).
PRUNE_ONNXRUNTIME = rm -rf $(1)/onnxruntime/transformers $(1)/onnxruntime/quantization $(1)/onnxruntime/tools \
	$(1)/onnxruntime/datasets $(1)/onnxruntime/backend $(1)/onnxruntime/capi/libonnxruntime.so* $(1)/bin
