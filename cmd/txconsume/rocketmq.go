package main

import (
	"flag"
	"os"
	"strings"

	"github.com/txconsume/txconsume/txconsume/rmq"
)

// envNamesrv names the RocketMQ name servers when -namesrv is not given.
const envNamesrv = "TXCONSUME_ROCKETMQ_NAMESRV"

// namesrvFlags registers -namesrv, -access-key and -secret-key.
type namesrvFlags struct {
	namesrv, accessKey, secretKey *string
}

func addNamesrvFlags(fs *flag.FlagSet) namesrvFlags {
	return namesrvFlags{
		namesrv:   fs.String("namesrv", "", "RocketMQ name servers, host:port[;host:port] (default $"+envNamesrv+")"),
		accessKey: fs.String("access-key", "", "ACL access key, when the cluster has ACL enabled"),
		secretKey: fs.String("secret-key", "", "ACL secret key (default $TXCONSUME_ROCKETMQ_SECRET_KEY)"),
	}
}

// admin returns an rmq.Admin on the name servers of the flags or of $TXCONSUME_ROCKETMQ_NAMESRV.
func (f namesrvFlags) admin() (*rmq.Admin, error) {
	a, _, err := f.adminAndAddrs()
	return a, err
}

// adminAndAddrs is admin, also returning the name server addresses.
func (f namesrvFlags) adminAndAddrs() (*rmq.Admin, []string, error) {
	list := *f.namesrv
	if list == "" {
		list = os.Getenv(envNamesrv)
	}
	addrs := strings.FieldsFunc(list, func(r rune) bool { return r == ';' || r == ',' })
	if len(addrs) == 0 {
		return nil, nil, usagef("no name server: set -namesrv or %s", envNamesrv)
	}
	var opts []rmq.AdminOption
	if ak, sk := f.credentials(); ak != "" {
		opts = append(opts, rmq.WithAdminCredentials(ak, sk))
	}
	a, err := rmq.NewAdmin(addrs, opts...)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	return a, addrs, nil
}

// parseAction parses "ACTION [flags]" or "[flags] ACTION" and returns the action ("" if none).
func parseAction(fs *flag.FlagSet, args []string) (string, error) {
	action := ""
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		action, args = args[0], args[1:]
	}
	if err := parse(fs, args, 1); err != nil {
		return "", err
	}
	if action == "" && fs.NArg() == 1 {
		action = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return "", usagef("unexpected argument %q", fs.Arg(0))
	}
	return action, nil
}

// credentials returns the ACL keys, the secret from $TXCONSUME_ROCKETMQ_SECRET_KEY when -secret-key
// is not given (a flag would show it in the process list).
func (f namesrvFlags) credentials() (accessKey, secretKey string) {
	if *f.accessKey == "" {
		return "", ""
	}
	secretKey = *f.secretKey
	if secretKey == "" {
		secretKey = os.Getenv("TXCONSUME_ROCKETMQ_SECRET_KEY")
	}
	return *f.accessKey, secretKey
}
