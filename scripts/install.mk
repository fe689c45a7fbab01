# make install / make uninstall: heavyd in BINDIR, its worker in
# LIBEXECDIR (heavyd finds it there without HEAVY_WORKER), the manual pages,
# an example configuration in SYSCONFDIR/heavyd (a real config.yaml is
# never touched), and heavyd.service and heavyd.socket in SYSTEMDUNITDIR.
# DESTDIR stages the tree for a package.  install-units and install-man
# install those alone (scripts/check-units).

PREFIX		?= /usr/local
BINDIR		?= $(PREFIX)/bin
SBINDIR		?= $(PREFIX)/sbin
LIBEXECDIR	?= $(PREFIX)/libexec/heavyd
MANDIR		?= $(PREFIX)/share/man
SYSCONFDIR	?= /etc
INSTALL		?= install
# systemd's own directory for a PREFIX=/usr package; else under PREFIX
# (systemd reads /usr/local/lib/systemd/system too).
ifeq ($(PREFIX),/usr)
SYSTEMDUNITDIR	?= $(or $(shell pkg-config --variable=systemdsystemunitdir \
		    systemd 2>/dev/null),/lib/systemd/system)
else
SYSTEMDUNITDIR	?= $(PREFIX)/lib/systemd/system
endif

# The two paths heavyd looks in are compiled in; the objects that hold
# them are rebuilt when they change.
HEAVY_PATHS := $(LIBEXECDIR):$(SYSCONFDIR)
$(shell mkdir -p $(BUILD) && echo '$(HEAVY_PATHS)' | cmp -s - $(BUILD)/paths || echo '$(HEAVY_PATHS)' > $(BUILD)/paths)
$(BUILD)/obj/supervisor/server.o $(BUILD)/obj/common/configfile.o: $(BUILD)/paths
$(BUILD)/obj/supervisor/server.o: CFLAGS_ALL += -DHEAVY_LIBEXECDIR='"$(LIBEXECDIR)"'
$(BUILD)/obj/common/configfile.o: CFLAGS_ALL += -DHEAVY_SYSCONFDIR='"$(SYSCONFDIR)"'

.PHONY: install install-man install-units uninstall
install: $(BUILD)/heavyd $(BUILD)/heavyd-worker $(BUILD)/heavyd-egress \
    install-man install-units
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/heavyd
	$(INSTALL) -m 755 $(BUILD)/heavyd $(DESTDIR)$(BINDIR)/heavyd
	$(INSTALL) -m 755 $(BUILD)/heavyd-worker $(DESTDIR)$(LIBEXECDIR)/heavyd-worker
	$(INSTALL) -m 755 $(BUILD)/heavyd-egress $(DESTDIR)$(LIBEXECDIR)/heavyd-egress
	$(INSTALL) -m 644 common/config.yaml.example \
	    $(DESTDIR)$(SYSCONFDIR)/heavyd/config.yaml.example

install-man:
	$(INSTALL) -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 644 supervisor/heavyd-ask.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 644 common/heavyd.conf.5 $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 644 supervisor/heavyd.8 $(DESTDIR)$(MANDIR)/man8/

# ExecStart names heavyd where it is installed (BINDIR, without DESTDIR).
install-units:
	$(INSTALL) -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|@BINDIR@|$(BINDIR)|g' supervisor/heavyd.service \
	    >$(DESTDIR)$(SYSTEMDUNITDIR)/heavyd.service.tmp
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/heavyd.service.tmp
	mv $(DESTDIR)$(SYSTEMDUNITDIR)/heavyd.service.tmp \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/heavyd.service
	$(INSTALL) -m 644 supervisor/heavyd.socket $(DESTDIR)$(SYSTEMDUNITDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/heavyd $(DESTDIR)$(LIBEXECDIR)/heavyd-worker \
	    $(DESTDIR)$(LIBEXECDIR)/heavyd-egress \
	    $(DESTDIR)$(MANDIR)/man1/heavyd-ask.1 \
	    $(DESTDIR)$(MANDIR)/man5/heavyd.conf.5 \
	    $(DESTDIR)$(MANDIR)/man8/heavyd.8 \
	    $(DESTDIR)$(SYSCONFDIR)/heavyd/config.yaml.example \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/heavyd.service \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/heavyd.socket
	-rmdir $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SYSCONFDIR)/heavyd 2>/dev/null
