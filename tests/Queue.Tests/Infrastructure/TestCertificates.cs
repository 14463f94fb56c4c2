namespace Queue.Tests.Infrastructure;

/// <summary>
/// A certificate authority of the test's own, made with <c>openssl</c>: a server certificate for
/// 127.0.0.1 / localhost and a client certificate, all PEM files in a temp folder.
/// </summary>
public sealed class TestCertificates : IDisposable
{
    private TestCertificates(string folder) => Folder = folder;

    public string Folder { get; }

    public string CaFile => Path.Combine(Folder, "ca.pem");

    public string ServerCertificateFile => Path.Combine(Folder, "server.pem");

    public string ServerKeyFile => Path.Combine(Folder, "server-key.pem");

    public string ClientCertificateFile => Path.Combine(Folder, "client.pem");

    public string ClientKeyFile => Path.Combine(Folder, "client-key.pem");

    public static async Task<TestCertificates> CreateAsync()
    {
        var folder = Path.Combine(Path.GetTempPath(), "queue-certs", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        // One CA; a server certificate whose names cover loopback; a client certificate (for etcd's client-cert-auth).
        const string script = """
            set -e
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 2 -subj "/CN=queue-test-ca" 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext
            openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj "/CN=localhost" 2>/dev/null
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
            printf 'extendedKeyUsage=clientAuth\n' > client.ext
            openssl req -newkey rsa:2048 -nodes -keyout client-key.pem -out client.csr -subj "/CN=queue-client" 2>/dev/null
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out client.pem -days 2 -extfile client.ext 2>/dev/null
            chmod 644 *.pem
            """;
        var (exit, output) = await OsProcess.BashAsync(script, folder, TimeSpan.FromSeconds(60));
        Assert.True(exit == 0, $"openssl failed: {output}");
        return new TestCertificates(folder);
    }

    public void Dispose() => Directory.Delete(Folder, recursive: true);
}
