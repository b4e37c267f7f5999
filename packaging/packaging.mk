# Packaging, package checks and the booted-systemd test. Included by the top-level Makefile
# (`-include packaging/packaging.mk`); every target installs the tools it needs when missing.
#
#   make deb             target/packaging/noexecd_<version>-1_amd64.deb  (static musl binary)
#   make rpm             target/packaging/noexecd-<version>-1.x86_64.rpm
#   make package-checks  lintian, dpkg-deb/rpm contents and scripts, rpm install into a scratch root,
#                        systemd-analyze verify and security (exposure <= 4.5)
#   make test-system     boots Debian 12 under systemd-nspawn and tests the installed service, its upgrade
#                        and downgrade to the next version of the same build (build.sh next: no compilation)
#
# Both checks run as part of `make test` (TEST_EXTRA).

# This file is included before the top-level Makefile's first rule: keep `all` the default goal.
noexecd_pkg_default_goal := $(.DEFAULT_GOAL)

.PHONY: package-deps package-bin deb rpm packages package-checks test-system

package-deps:
	@bash scripts/install-deps.sh package

package-bin: package-deps
	bash packaging/build.sh bin

deb: package-bin
	bash packaging/build.sh deb

rpm: package-bin
	bash packaging/build.sh rpm

packages: deb rpm

package-checks: deb rpm
	timeout 600 bash packaging/package-checks.sh

test-system: deb rpm
	bash packaging/build.sh next
	timeout --kill-after=30 1200 bash packaging/test-system/run.sh

TEST_EXTRA += package-checks test-system

.DEFAULT_GOAL := $(noexecd_pkg_default_goal)
