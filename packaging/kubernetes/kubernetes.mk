# The container image and the Kubernetes manifests. Included by the top-level Makefile
# (`-include packaging/kubernetes/kubernetes.mk`).
#
#   make image         localhost/noexecd:<version> (FROM scratch, the static binary) with podman, checked by
#                      running `noexecd --version` in it; target/packaging/noexecd-image-<version>.tar
#   make k8s-manifest  packaging/kubernetes/noexecd.yaml from daemonset.yaml and the shipped policies
#   make k8s-check     noexecd.yaml is up to date, and valid against the Kubernetes schemas, offline
#                      (kubernetes-validate --strict)
#
# `make test` runs both `image` and `k8s-check` (TEST_EXTRA).

noexecd_k8s_default_goal := $(.DEFAULT_GOAL)

K8S_DIR := packaging/kubernetes
KUBERNETES_VALIDATE ?= $(firstword $(wildcard target/k8s-venv/bin/kubernetes-validate) kubernetes-validate)

.PHONY: image k8s-manifest k8s-check

image: package-bin
	NOEXECD_COMMIT=$(NOEXECD_COMMIT) bash $(K8S_DIR)/image.sh

k8s-manifest:
	python3 $(K8S_DIR)/build-manifest.py

k8s-check: test-deps
	python3 $(K8S_DIR)/build-manifest.py --check
	$(KUBERNETES_VALIDATE) --strict --quiet $(K8S_DIR)/noexecd.yaml
	@echo "k8s-check: $(K8S_DIR)/noexecd.yaml is up to date and valid"

TEST_EXTRA += image k8s-check

.DEFAULT_GOAL := $(noexecd_k8s_default_goal)
