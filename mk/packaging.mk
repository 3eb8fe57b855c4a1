# Installation, the Debian package and the Raspberry Pi image test.
# Included by the Makefile; see packaging/README.md.
#
#   make install [DESTDIR=...] [PREFIX=/usr]   the daemon, its configuration
#                                     (kept when present), units, man pages
#   make deb [ARCH=arm64|armhf]       build-pkg/deb/<arch>/tlsgate_*.deb
#   make deb-test                     make deb, then lintian and a content check
#   make image-test                   boot an arm64 Debian 12 guest with the
#                                     package installed and prove it forwards

PREFIX     ?= /usr
SBINDIR    ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= /lib/systemd/system
ARCH       ?=

UNIT_FILES := $(wildcard systemd/*.service systemd/*.socket)

.PHONY: deb deb-test image-test

# The unit files name /usr/sbin and /etc; other prefixes are substituted.
install: $(BIN)/tlsgate
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/tlsgate \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BIN)/tlsgate $(DESTDIR)$(SBINDIR)/tlsgate
	@# An administrator's configuration is never overwritten.
	[ -e $(DESTDIR)$(SYSCONFDIR)/tlsgate/tlsgate.conf ] || \
	  install -m 0644 conf/tlsgate.conf $(DESTDIR)$(SYSCONFDIR)/tlsgate/tlsgate.conf
	install -m 0644 docs/tlsgate.8 $(DESTDIR)$(MANDIR)/man8/tlsgate.8
	install -m 0644 docs/tlsgate.conf.5 $(DESTDIR)$(MANDIR)/man5/tlsgate.conf.5
	for u in $(UNIT_FILES); do \
	  sed -e 's|/usr/sbin/tlsgate|$(SBINDIR)/tlsgate|g' \
	      -e 's|/etc/tlsgate/|$(SYSCONFDIR)/tlsgate/|g' $$u \
	    > $(DESTDIR)$(UNITDIR)/$${u#systemd/} || exit 1; \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$${u#systemd/}; done

deb:
	@sh packaging/deps.sh
	@$(if $(ARCH),sh packaging/cross-deps.sh $(ARCH))
	sh packaging/build-deb.sh $(ARCH)

deb-test:
	@sh packaging/deps.sh
	sh tests/e2e/90-package.sh

image-test:
	@sh packaging/deps.sh image
	sh packaging/image-test/run.sh
