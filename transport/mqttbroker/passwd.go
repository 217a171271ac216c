package mqttbroker

import (
	"bufio"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// hashIterations is the PBKDF2 iteration count HashPassword uses (mosquitto_passwd
// uses 101; verification reads the count from each line).
const hashIterations = 20000

// credential is one parsed line of a password file.
type credential struct {
	iterations int // 0 for $6$ (one SHA-512 round)
	salt, hash []byte
}

// readPasswordFile reads a password file in mosquitto_passwd format, one
// "user:$7$iterations$salt$hash" (PBKDF2-SHA512) or "user:$6$salt$hash"
// (SHA-512) per line, salt and hash in base64; empty lines and lines
// starting with # are ignored. Errors give the line number, never the line.
func readPasswordFile(path string) (map[string]credential, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading password file: %w", err)
	}
	defer f.Close()
	users, err := parsePasswords(f)
	if err != nil {
		return nil, fmt.Errorf("reading password file %s: %w", path, err)
	}
	return users, nil
}

func parsePasswords(r io.Reader) (map[string]credential, error) {
	users := map[string]credential{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hashed, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: want user:hash", n)
		}
		c, err := parseHash(hashed)
		if err != nil {
			return nil, fmt.Errorf("line %d (user %q): %w", n, user, err)
		}
		users[user] = c
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("no users")
	}
	return users, nil
}

func parseHash(s string) (credential, error) {
	parts := strings.Split(s, "$")
	var c credential
	var salt, hash string
	switch {
	case len(parts) == 5 && parts[0] == "" && parts[1] == "7":
		n, err := strconv.Atoi(parts[2])
		if err != nil || n < 1 {
			return c, fmt.Errorf("bad iteration count")
		}
		c.iterations, salt, hash = n, parts[3], parts[4]
	case len(parts) == 4 && parts[0] == "" && parts[1] == "6":
		salt, hash = parts[2], parts[3]
	default:
		return c, fmt.Errorf("not a mosquitto_passwd hash ($6$ or $7$); plain-text passwords are not accepted")
	}
	var err error
	if c.salt, err = base64.StdEncoding.DecodeString(salt); err != nil {
		return c, fmt.Errorf("bad salt encoding")
	}
	if c.hash, err = base64.StdEncoding.DecodeString(hash); err != nil || len(c.hash) == 0 {
		return c, fmt.Errorf("bad hash encoding")
	}
	return c, nil
}

// verify reports whether password matches, in constant time for a given
// hash.
func (c credential) verify(password string) bool {
	var sum []byte
	if c.iterations == 0 {
		h := sha512.Sum512(append([]byte(password), c.salt...))
		sum = h[:]
	} else {
		var err error
		sum, err = pbkdf2.Key(sha512.New, password, c.salt, c.iterations, len(c.hash))
		if err != nil {
			return false
		}
	}
	return subtle.ConstantTimeCompare(sum, c.hash) == 1
}

// HashPassword returns the password-file line for user and password in
// mosquitto_passwd's $7$ format (PBKDF2-SHA512, random 12-byte salt), so the
// file works with this broker and with mosquitto alike.
func HashPassword(user, password string) (string, error) {
	if user == "" || strings.Contains(user, ":") {
		return "", fmt.Errorf("user name %q is empty or contains ':'", user)
	}
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum, err := pbkdf2.Key(sha512.New, password, salt, hashIterations, sha512.Size)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:$7$%d$%s$%s", user, hashIterations,
		base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(sum)), nil
}
