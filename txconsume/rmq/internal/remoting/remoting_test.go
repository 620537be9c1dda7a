package remoting

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the algorithm under test
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQuoteIntKeys(t *testing.T) {
	// What a 5.x name server answers for GET_BROKER_CLUSTER_INFO, fastjson's bare integer keys
	// included; the string values hold colons, commas and braces that must stay as they are.
	in := `{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911",1 : "127.0.0.1:10912"},` +
		`"brokerName":"broker-a","cluster":"DefaultCluster"}},"clusterAddrTable":{"DefaultCluster":["broker-a"]},` +
		`"note":"{0:\"x\",1:y}","n":[1,2,{3:4}]}`
	var got struct {
		BrokerAddrTable map[string]struct {
			BrokerAddrs map[string]string `json:"brokerAddrs"`
		} `json:"brokerAddrTable"`
		Note string `json:"note"`
		N    []any  `json:"n"`
	}
	require.NoError(t, json.Unmarshal(QuoteIntKeys([]byte(in)), &got))
	require.Equal(t, map[string]string{"0": "127.0.0.1:10911", "1": "127.0.0.1:10912"}, got.BrokerAddrTable["broker-a"].BrokerAddrs)
	require.Equal(t, `{0:"x",1:y}`, got.Note)
	require.Equal(t, []any{1.0, 2.0, map[string]any{"3": 4.0}}, got.N)
}

func TestSign(t *testing.T) {
	// Values sorted by field name (AccessKey included), then the body, HMAC-SHA1 with the secret
	// key, base64: the reference value was computed with the rocketmq-client-go ACL interceptor's
	// algorithm for the same input.
	c := Client{AccessKey: "ak", SecretKey: "sk"}
	fields := map[string]string{"topic": "t", "queueId": "0"}
	c.sign(fields, []byte("body"))
	require.Equal(t, "ak", fields["AccessKey"])
	require.Equal(t, referenceSignature("ak"+"0"+"t"+"body", "sk"), fields["Signature"])
}

func referenceSignature(content, secret string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(content))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
