// RedactSecrets: the one function every URL and error message passes
// before herald prints, stores or serves it (#13.4).
#include "herald/redact.h"

#include <gtest/gtest.h>

namespace herald {
namespace {

TEST(RedactSecrets, MasksTheUserinfoPasswordAndKeepsTheUser) {
  EXPECT_EQ(RedactSecrets("http://user:secret@host:8080/x"),
            "http://user:***@host:8080/x");
  EXPECT_EQ(RedactSecrets("postgresql://herald:pw@127.0.0.1:5432/db"),
            "postgresql://herald:***@127.0.0.1:5432/db");
  EXPECT_EQ(RedactSecrets("https://u:p%40ss@h/"), "https://u:***@h/");
  // A password holding '@' or ':' is masked whole.
  EXPECT_EQ(RedactSecrets("http://u:a:b@c@h/p"), "http://u:***@h/p");
  // A user alone names the user.
  EXPECT_EQ(RedactSecrets("postgresql://nobody@127.0.0.1:1/db"),
            "postgresql://nobody@127.0.0.1:1/db");
  // No userinfo: an '@' in the path is not one.
  EXPECT_EQ(RedactSecrets("http://h/a@b:c"), "http://h/a@b:c");
}

TEST(RedactSecrets, MasksPasswordLikeParameters) {
  EXPECT_EQ(RedactSecrets("http://h/x?token=abc&page=2"),
            "http://h/x?token=***&page=2");
  EXPECT_EQ(RedactSecrets("http://h/x?a=1&Password=p&API_KEY=k#sig=s"),
            "http://h/x?a=1&Password=***&API_KEY=***#sig=***");
  EXPECT_EQ(RedactSecrets("https://b.s3.amazonaws.com/k?X-Amz-Credential=c&"
                          "X-Amz-Signature=s&X-Amz-Security-Token=t&x=1"),
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&"
            "X-Amz-Signature=***&X-Amz-Security-Token=***&x=1");
  for (const char* key :
       {"passwd", "pwd", "secret", "access_token", "signature", "apikey"}) {
    EXPECT_EQ(RedactSecrets(std::string("http://h/?") + key + "=v1"),
              std::string("http://h/?") + key + "=***")
        << key;
  }
  // Names that only contain a secret's name are not secrets.
  EXPECT_EQ(RedactSecrets("http://h/?tokens_left=3&design=x"),
            "http://h/?tokens_left=3&design=x");
  // A libpq connection string.
  EXPECT_EQ(RedactSecrets("host=db user=me password=hunter2 dbname=x"),
            "host=db user=me password=*** dbname=x");
  EXPECT_EQ(RedactSecrets("host=db password='a b' dbname=x"),
            "host=db password='***' dbname=x");
}

TEST(RedactSecrets, MasksEveryUrlInFreeText) {
  EXPECT_EQ(
      RedactSecrets("event 1 (position 2): permanent: HTTP 400 from "
                    "http://u:pw@127.0.0.1:9/e?token=t0k: bad; POST "
                    "\"https://a:b@h/\" failed"),
      "event 1 (position 2): permanent: HTTP 400 from "
      "http://u:***@127.0.0.1:9/e?token=***: bad; POST \"https://a:***@h/\" "
      "failed");
}

TEST(RedactSecrets, MasksAuthorizationHeaders) {
  EXPECT_EQ(RedactSecrets("Authorization: Bearer abc.def"),
            "Authorization: ***");
  EXPECT_EQ(RedactSecrets("sent with bearer abc123 to h"),
            "sent with bearer *** to h");
}

TEST(RedactSecrets, LeavesOtherTextAloneAndIsIdempotent) {
  const char* plain[] = {"", "stdout:", "file:/tmp/x.jsonl",
                         "http://127.0.0.1:9000/events?mode=a",
                         "HTTP 503 from http://h/: Retry-After: 1"};
  for (const char* p : plain) EXPECT_EQ(RedactSecrets(p), p);
  std::string once = RedactSecrets("http://u:p@h/?token=t Bearer x");
  EXPECT_EQ(RedactSecrets(once), once);
}

}  // namespace
}  // namespace herald
