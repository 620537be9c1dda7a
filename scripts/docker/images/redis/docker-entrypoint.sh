#!/bin/sh
# Entrypoint of the local Redis image, as the official redis image's: options alone run
# redis-server, and a server started without a config file turns protected mode off, since clients
# reach it through the container's network rather than loopback.
set -e
case "$1" in -*|*.conf) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ]; then
  case "$2" in
    *.conf) ;;
    *) case " $* " in *" --protected-mode "*) ;; *) set -- "$@" --protected-mode no ;; esac ;;
  esac
fi
exec "$@"
