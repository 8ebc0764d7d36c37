import Foundation
import TestSupport
import Testing

@testable import BulkWatch

/// The reader never guesses a URL (issue 11): the old one took the first `base-url` it met, the
/// user API's, as the OAuth server and sent the client secret to `{that}/oauth2/token`.
@Suite("oauthconf.xml: values by path, never by guess")
struct OAuthConfShapeTests {
    private func parse(_ xml: String) throws(SettingError) -> OAuthConf {
        try OAuthConf.parse(Data(xml.utf8), path: "o.xml")
    }

    @Test func theVendorShapeGivesEveryValue() throws {
        let conf = try parse(
            """
            <oauth-config version="1.4">
              <credentials><clientid>app</clientid><clientsecret>s</clientsecret></credentials>
              <endpoints><url id="token_endpoint">https://auth.example.com/oauth2/token</url></endpoints>
              <apis>
                <api name="api.user" base-url="https://wrong.example.com/api"/>
                <api name="api.activityid" base-url="https://api.example.com/activityid/"/>
              </apis>
            </oauth-config>
            """)
        #expect(conf.tokenURL == "https://auth.example.com/oauth2/token")
        #expect(conf.bulkEndpoint == "https://api.example.com/activityid/v1/user/bulk")
    }

    @Test func aBaseURLAloneIsNeverTakenForTheTokenEndpoint() {
        do {
            let conf = try parse(
                """
                <resources>
                  <string name="client_id">app</string><string name="client_secret">s</string>
                  <api base-url="https://api.example.com/api"/>
                </resources>
                """)
            #expect(conf.tokenURL == nil)
        } catch {
            #expect(!error.message.contains("api.example.com"))
        }
    }

    @Test(arguments: [
        #"<url id="token_endpoint">https://a.example.com/t</url><url id="token_endpoint">https://b.example.com/t</url>"#
    ])
    func twoTokenEndpointsAreAmbiguous(_ urls: String) {
        #expect(throws: SettingError.self) {
            try parse(
                """
                <oauth-config version="1">
                <credentials><clientid>a</clientid><clientsecret>s</clientsecret></credentials>
                <endpoints>\(urls)</endpoints></oauth-config>
                """)
        }
    }

    @Test func userinfoInAFileURLIsRefused() {
        do {
            _ = try parse(
                """
                <oauth-config version="1">
                <credentials><clientid>a</clientid><clientsecret>s</clientsecret></credentials>
                <endpoints><url id="token_endpoint">https://u:p@auth.example.com/t</url></endpoints></oauth-config>
                """)
            Issue.record("accepted")
        } catch {
            #expect(error.message.contains("user name or password"))
        }
    }

    @Test func aVendorFileWithoutVersionIsRefused() {
        #expect(throws: SettingError.self) {
            try parse(
                "<oauth-config><credentials><clientid>a</clientid><clientsecret>s</clientsecret></credentials>"
                    + "</oauth-config>")
        }
    }
}

/// Inputs the `oauthconf` fuzz target found (Fuzz/README.md).
@Suite("oauthconf.xml fuzz regressions")
struct OAuthConfFuzzRegressionTests {
    /// An element name with invalid UTF-8 made corelibs' XMLParser trap: a crash instead of exit 78.
    @Test func anElementNameThatIsNotUTF8IsAnErrorNotACrash() {
        let bytes =
            Array("<oauth-confi".utf8) + [UInt8](repeating: 0xE1, count: 23)
            + Array(#"g version="1"><credentials><clientid>a</clientid></credentials></oauth-config>"#.utf8)
        do {
            _ = try OAuthConf.parse(Data(bytes), path: "o.xml")
            Issue.record("accepted")
        } catch {
            #expect(error.message == "oauthconf o.xml: not valid XML: the file is not UTF-8")
        }
    }

    /// `<?U?>` (a processing instruction without data) made corelibs' XMLParser call strlen(NULL):
    /// `bulkwatch check --oauthconf` died with SIGSEGV.
    @Test(arguments: ["<?U?>\n<!-S-a>\n<!-S-\n", #"<?U?><oauth-config version="1"/>"#, #"<a><?pi?></a>"#])
    func aProcessingInstructionIsAnErrorNotACrash(_ xml: String) {
        do {
            _ = try OAuthConf.parse(Data(xml.utf8), path: "o.xml")
            Issue.record("accepted")
        } catch {
            #expect(error.message.hasPrefix("oauthconf o.xml: not valid XML"))
        }
    }

    @Test func theXMLDeclarationIsStillAccepted() throws {
        let conf = try OAuthConf.parse(
            Data(
                ("\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                    + "<oauthconf><client_id>a</client_id><client_secret>s</client_secret></oauthconf>").utf8),
            path: "o.xml")
        #expect(conf.clientID == "a")
    }
}
