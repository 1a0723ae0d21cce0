// java.net.http.HttpClient client, launched as a single source file: `java Client.java ...`.
// usage: java Client.java URL UPLOAD DOWNLOAD [CA_PEM]
// POSTs UPLOAD bytes to URL/upload, then GETs URL/download?size=DOWNLOAD.
// With CA_PEM, HTTPS trusts exactly that certificate through a custom SSLContext.

import java.io.FileInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.Arrays;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class Client {
    static SSLContext trusting(String pem) throws Exception {
        X509Certificate cert;
        try (FileInputStream in = new FileInputStream(pem)) {
            cert = (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        ks.setCertificateEntry("netmon-test", cert);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }

    public static void main(String[] args) throws Exception {
        String base = args[0];
        int upload = Integer.parseInt(args[1]);
        int download = Integer.parseInt(args[2]);
        HttpClient.Builder b = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10));
        if (args.length > 3) {
            b.sslContext(trusting(args[3]));
        }
        HttpClient client = b.build();

        byte[] body = new byte[upload];
        Arrays.fill(body, (byte) 'j');
        HttpRequest up = HttpRequest.newBuilder(URI.create(base + "/upload"))
                .timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/octet-stream")
                .POST(HttpRequest.BodyPublishers.ofByteArray(body))
                .build();
        HttpResponse<String> r1 = client.send(up, HttpResponse.BodyHandlers.ofString());
        String expect = "\"received\": " + upload;
        if (r1.statusCode() != 200 || !r1.body().contains(expect)) {
            System.err.println("upload failed: " + r1.statusCode() + " " + r1.body());
            System.exit(1);
        }

        HttpRequest down = HttpRequest.newBuilder(URI.create(base + "/download?size=" + download))
                .timeout(Duration.ofSeconds(30))
                .GET()
                .build();
        HttpResponse<byte[]> r2 = client.send(down, HttpResponse.BodyHandlers.ofByteArray());
        if (r2.statusCode() != 200 || r2.body().length != download) {
            System.err.println("download failed: " + r2.statusCode() + " " + r2.body().length + " bytes");
            System.exit(1);
        }
        System.out.println("{\"uploaded\": " + upload + ", \"downloaded\": " + r2.body().length + "}");
        System.exit(0);
    }
}
