# make install / make uninstall: heavyd in BINDIR, its worker in
# LIBEXECDIR (heavyd finds it there without HEAVY_WORKER), the manual pages,
# and an example configuration in SYSCONFDIR/heavyd (a real config.yaml is
# never touched).  DESTDIR stages the tree for a package.

PREFIX		?= /usr/local
BINDIR		?= $(PREFIX)/bin
SBINDIR		?= $(PREFIX)/sbin
LIBEXECDIR	?= $(PREFIX)/libexec/heavyd
MANDIR		?= $(PREFIX)/share/man
SYSCONFDIR	?= /etc
INSTALL		?= install

# The two paths heavyd looks in are compiled in; the objects that hold
# them are rebuilt when they change.
HEAVY_PATHS := $(LIBEXECDIR):$(SYSCONFDIR)
$(shell mkdir -p $(BUILD) && echo '$(HEAVY_PATHS)' | cmp -s - $(BUILD)/paths || echo '$(HEAVY_PATHS)' > $(BUILD)/paths)
$(BUILD)/obj/supervisor/server.o $(BUILD)/obj/common/configfile.o: $(BUILD)/paths
$(BUILD)/obj/supervisor/server.o: CFLAGS_ALL += -DHEAVY_LIBEXECDIR='"$(LIBEXECDIR)"'
$(BUILD)/obj/common/configfile.o: CFLAGS_ALL += -DHEAVY_SYSCONFDIR='"$(SYSCONFDIR)"'

.PHONY: install uninstall
install: $(BUILD)/heavyd $(BUILD)/heavyd-worker
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/heavyd
	$(INSTALL) -m 755 $(BUILD)/heavyd $(DESTDIR)$(BINDIR)/heavyd
	$(INSTALL) -m 755 $(BUILD)/heavyd-worker $(DESTDIR)$(LIBEXECDIR)/heavyd-worker
	$(INSTALL) -m 644 supervisor/heavyd-ask.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 644 common/heavyd.conf.5 $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 644 supervisor/heavyd.8 $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 644 common/config.yaml.example \
	    $(DESTDIR)$(SYSCONFDIR)/heavyd/config.yaml.example

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/heavyd $(DESTDIR)$(LIBEXECDIR)/heavyd-worker \
	    $(DESTDIR)$(MANDIR)/man1/heavyd-ask.1 \
	    $(DESTDIR)$(MANDIR)/man5/heavyd.conf.5 \
	    $(DESTDIR)$(MANDIR)/man8/heavyd.8 \
	    $(DESTDIR)$(SYSCONFDIR)/heavyd/config.yaml.example
	-rmdir $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SYSCONFDIR)/heavyd 2>/dev/null
