package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttbridge/mqttbridge/internal/auth"
	"github.com/mqttbridge/mqttbridge/internal/config"
)

// subcommand runs `mqttbridge config check`, `mqttbridge key`,
// `mqttbridge token` and `mqttbridge help`. ok is false when args name none
// of them (then the server runs); code is the exit code.
func subcommand(args []string, stdout, stderr io.Writer, getenv func(string) string) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch {
	case args[0] == "help":
		fmt.Fprint(stdout, config.Usage())
		return 0, true
	case len(args) >= 2 && args[0] == "config" && args[1] == "check":
		return configCheck(args[2:], stdout, stderr, getenv), true
	case args[0] == "key":
		return keyCommand(args[1:], stdout, stderr), true
	case args[0] == "token":
		return tokenCommand(args[1:], stdout, stderr, getenv), true
	}
	return 0, false
}

// configCheck loads the configuration as the server would and prints it,
// secrets redacted; exit code 2 when it is invalid.
func configCheck(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cfg, err := config.Load(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, "Usage: mqttbridge config check [flags]\n\nLoads the configuration from the same flags, environment and file as the\nserver, prints it with secrets redacted, and exits 2 when it is invalid.\n")
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "mqttbridge: invalid configuration:\n%v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "# effective configuration (secrets redacted)\n%s", cfg.String())
	auth := "off"
	if cfg.Auth.Enabled() {
		auth = "on"
	}
	fmt.Fprintf(stderr, "configuration OK; authentication %s\n", auth)
	return 0
}

// keyCommand makes a new random API key and prints it with its SHA-256,
// ready for auth.api_keys.
func keyCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mqttbridge key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "backend", "the identity's name in auth.api_keys")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: mqttbridge key [--name NAME]\n\nPrints a new random API key and the auth.api_keys entry with its SHA-256.\nGive the key to the client; put only the entry in the configuration.\n")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	key := "mbk_" + base64.RawURLEncoding.EncodeToString(b[:])
	fmt.Fprintf(stdout, `key: %s

auth:
  api_keys:
    - name: %s
      sha256: %s
      # The key may do nothing until rules allow it: MQTT filters per
      # action, %%u is the name above (see docs/security.md). For example:
      rules:
        publish: ["devices/%%u/#"]
        subscribe: ["devices/#"]
        # request: ["devices/+/cmd"]
`, key, *name, auth.HashKey(key))
	return 0
}

// tokenCommand signs an HS256 JWT for tests and scripts, with the secret of
// --secret-file, MQTTBRIDGE_JWT_HMAC_KEY or the configuration.
func tokenCommand(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("mqttbridge token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "the identity's name (required)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	iss := fs.String("iss", "", "issuer (default: auth.jwt.issuer of --config)")
	aud := fs.String("aud", "", "audience (default: auth.jwt.audience of --config)")
	secretFile := fs.String("secret-file", "", "file holding the HMAC secret")
	cfgPath := fs.String("config", "", "configuration file to take the secret, issuer and audience from")
	var claims []string
	fs.Func("claim", "an extra claim name=value (value JSON if it parses, else a string); repeatable", func(v string) error {
		if !strings.Contains(v, "=") {
			return errors.New("want name=value")
		}
		claims = append(claims, v)
		return nil
	})
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: mqttbridge token --sub NAME [--ttl 1h] [--iss ISS] [--aud AUD] [--claim k=v]...\n"+
			"                        [--secret-file FILE | --config FILE]\n\n"+
			"Prints an HS256 JWT signed with the secret of --secret-file, else\n"+
			"MQTTBRIDGE_JWT_HMAC_KEY, else the first auth.jwt HMAC key of --config.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *sub == "" {
		fmt.Fprintln(stderr, "mqttbridge token: --sub is required")
		return 2
	}
	var secret string
	switch {
	case *secretFile != "":
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			fmt.Fprintf(stderr, "mqttbridge token: %v\n", err)
			return 1
		}
		secret = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	case getenv("MQTTBRIDGE_JWT_HMAC_KEY") != "":
		secret = getenv("MQTTBRIDGE_JWT_HMAC_KEY")
	}
	if *cfgPath != "" {
		cfg, err := config.Load([]string{"--config", *cfgPath}, getenv)
		if err != nil {
			fmt.Fprintf(stderr, "mqttbridge token: invalid configuration:\n%v\n", err)
			return 2
		}
		if secret == "" && len(cfg.Auth.JWT.HMACKeys) > 0 {
			secret = cfg.Auth.JWT.HMACKeys[0]
		}
		if *iss == "" {
			*iss = cfg.Auth.JWT.Issuer
		}
		if *aud == "" {
			*aud = cfg.Auth.JWT.Audience
		}
	}
	if len(secret) < 32 {
		fmt.Fprintln(stderr, "mqttbridge token: no HMAC secret of at least 32 bytes (--secret-file, MQTTBRIDGE_JWT_HMAC_KEY or --config)")
		return 2
	}
	now := time.Now()
	c := jwt.MapClaims{"sub": *sub, "iat": now.Unix(), "exp": now.Add(*ttl).Unix()}
	if *iss != "" {
		c["iss"] = *iss
	}
	if *aud != "" {
		c["aud"] = *aud
	}
	for _, kv := range claims {
		k, v, _ := strings.Cut(kv, "=")
		var parsed any
		if err := jsonUnmarshal(v, &parsed); err == nil {
			c[k] = parsed
		} else {
			c[k] = v
		}
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		fmt.Fprintf(stderr, "mqttbridge token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
