package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/auth"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/bridge"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/config"
)

// runLogin signs in with the authorization-code flow and PKCE
// (auth.Login) and writes TOKEN_FILE; a pasted redirect address is read
// from stdin.
func runLogin(ctx context.Context, vars map[string]string, stdin io.Reader, stdout io.Writer) error {
	cfg, err := config.Load(vars, false)
	if err != nil {
		return err
	}
	var missing []string
	if cfg.ClientID == "" {
		missing = append(missing, "ULTIMAKER_CLIENT_ID (ask UltiMaker for an OAuth client; see the README)")
	}
	if cfg.TokenFile == "" {
		missing = append(missing, "TOKEN_FILE (where to store the sign-in)")
	}
	if len(missing) > 0 {
		return &config.Error{Msg: "login needs " + strings.Join(missing, " and ")}
	}
	tok, err := auth.Login(ctx, bridge.Login(cfg, stdin), stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Signed in. The token is in %s (mode 0600); a running bridge picks it up within %s.\n",
		cfg.TokenFile, cfg.AuthRecheck)
	if who := auth.WhoAmI(ctx, cfg.AccountURL, tok.AccessToken); who != "" {
		fmt.Fprintln(stdout, who)
	}
	return nil
}
